"""First-party ppds plugins, registered through the `ppds` entry points like any third party."""
