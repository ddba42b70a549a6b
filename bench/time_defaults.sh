#!/usr/bin/env bash
# Time the default workflow of one or more commits, one after the other, each on a fresh clone of this
# repository: clone, `bash scripts/bootstrap.sh`, then `/usr/bin/time .venv/bin/snakemake --cores all`.
# Run it on an otherwise idle machine; compare CPU-seconds (user + sys) as well as wall time.
#   bash bench/time_defaults.sh e6b874b HEAD        # the baseline first
# Writes one line per commit to $OUT/times.txt (default /tmp/time_defaults) and keeps each clone there.
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
out=${OUT:-/tmp/time_defaults}
mkdir -p "$out"
for rev in "$@"; do
  sha=$(git -C "$repo" rev-parse --short "$rev")
  dir="$out/$sha"
  rm -rf "$dir" && git clone -q "$repo" "$dir" && git -C "$dir" checkout -q "$sha"
  (cd "$dir" && bash scripts/bootstrap.sh > "$out/$sha.bootstrap.log" 2>&1)
  (cd "$dir" && /usr/bin/time -f "$sha %e s wall %U user %S sys" -o "$out/$sha.time" \
    .venv/bin/snakemake --cores all > "$out/$sha.log" 2>&1) || echo "$sha: the workflow failed (see $out/$sha.log)" >> "$out/times.txt"
  cat "$out/$sha.time" >> "$out/times.txt"
  tail -1 "$out/times.txt"
done
