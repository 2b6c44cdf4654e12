"""First-party attacks: LiRA, model-agnostic MIAs, diffusion reconstruction, DP-SGD audit."""
