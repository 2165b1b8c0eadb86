#!/usr/bin/env bash
# Graphviz's `dot`: Flow.plot() and Document.plot() use it when present (else a built-in layout),
# and tests/unit/test_plotting.py draws with both.
# Idempotent: does nothing when `dot` is already on PATH.
set -euo pipefail
if command -v dot >/dev/null 2>&1; then
    exit 0
fi
echo "graphviz: installing (for Flow.plot / Document.plot)"
LOG_DIR="${JINAD_FAB_LOG_DIR:-/var/log/jinad-fab}"
mkdir -p "$LOG_DIR"
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends graphviz \
    >"$LOG_DIR/apt-graphviz.log" 2>&1 || { tail -20 "$LOG_DIR/apt-graphviz.log"; exit 1; }
