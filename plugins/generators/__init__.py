"""First-party generators: DP-GAN, DP-diffusion (DPDM-style), PrivImage."""
