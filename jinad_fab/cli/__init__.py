"""Command-line entry points: `jinad-fab` (main.py) and `jinad` (daemon.py)."""
