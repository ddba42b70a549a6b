#!/usr/bin/env bash
# Create .venv inside the checkout and install grokpath with its pinned dependencies.
# Idempotent: re-installs only when pyproject.toml changes. Needs Python 3.11+ and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "grokpath needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian splits venv/ensurepip out of the interpreter package.
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  else
    echo "python venv support is missing: install python3-venv" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.grokpath-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  # torch is pinned (==2.13.0): pip takes the CPU build from this machine's disk, never a CUDA build.
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test,olmo-core]"  # olmo-core: OLMo-core run directories (docs/OLMO_CORE.md)
  rm -f .venv/.grokpath-* && touch "$stamp"
fi
echo "grokpath environment ready: $(pwd)/.venv" >&2
# Real CSQA / MMLU college_chemistry / HumanEval rows and the OLMo tokenizer for the rehearsal and tests.
bash scripts/fetch_real_rows.sh
