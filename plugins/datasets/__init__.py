"""First-party datasets: embedded (no download) and local-folder loaders."""
