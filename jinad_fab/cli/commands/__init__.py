"""`jinad-fab` subcommands: each module exposes `command` (listed in cli/main.py)."""
