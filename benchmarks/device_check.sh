#!/usr/bin/env bash
# The prepared GPU device check (issue 44): one JSON summary, rewritten after every part.
#
#   benchmarks/device_check.sh [--dry-run] [--wheels DIR] [--deadline-s S] SUMMARY.json
#
# On a lent GPU (docs/benchmarks/device-check.md): installs from build/device-wheels
# (`make device-wheels`) only what the interpreter lacks, then runs each part under its own
# time limit. --dry-run runs the same parts on this CPU at tiny budgets and installs nothing.
# The interpreter is $PYTHON, else this tree's .venv, else python3 (the device's, with PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" benchmarks/device_check.py --python "$PYTHON" "$@"
