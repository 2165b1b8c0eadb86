"""``python -m jinad_fab.runtime {pea,gateway,pod}``: what the runtime starts for its own children."""

import os

from .entry import exit_now, main

if __name__ == "__main__":
    exit_now(main(default_log_level=os.environ.get("JINAD_FAB_LOG_LEVEL")))
