#!/usr/bin/env bash
# The hello tests open their pages in a real headless browser: Debian's chromium and its
# chromedriver (never a browser downloaded at test time), driven by selenium (the `hello` extra).
# Idempotent and quiet: a second run only checks.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# fonts so screenshots show text, not boxes
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
if [ "${#need[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# selenium comes with `pip install -e '.[all,dev]'` (the dev extra); installing it here as well lets
# this step be checked on its own. SE_OFFLINE keeps Selenium Manager from fetching any driver.
python -c "import selenium" 2>/dev/null || python -m pip install -q 'selenium>=4.20'
