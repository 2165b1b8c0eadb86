"""`jinad`: the per-host REST daemon (see the daemon issue)."""

import sys


def main() -> None:
    print("jinad: not yet", file=sys.stderr)
    sys.exit(1)
