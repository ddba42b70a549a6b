#!/usr/bin/env bash
# Lint, then the whole test suite (what CI runs). Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -m "not e2e and not slurm"   # the fast edit loop, under 2 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/snakemake --lint --quiet all
.venv/bin/python scripts/config_docs.py --check
.venv/bin/python -m pytest "$@"
