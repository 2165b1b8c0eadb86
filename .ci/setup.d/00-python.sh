#!/usr/bin/env bash
# Python tooling the test command itself relies on.
set -euo pipefail
python -m pip install -q --upgrade pip setuptools wheel
