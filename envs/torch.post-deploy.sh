#!/usr/bin/env bash
# Snakemake runs this inside the new conda env right after creating it: install grokpath
# (the rules call its CLI) editable, so code changes need no env rebuild. Snakemake runs
# it from the working directory: run snakemake from the repository root, or set GROKPATH_REPO.
set -euo pipefail
repo="${GROKPATH_REPO:-$PWD}"
if [[ ! -f "$repo/pyproject.toml" ]] || ! grep -q '^name = "grokpath"' "$repo/pyproject.toml"; then
    echo "post-deploy: $repo is not the grokpath repository; set GROKPATH_REPO to it" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation -e "$repo"
