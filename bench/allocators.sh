#!/usr/bin/env bash
# One full-batch step of the default world on parallel domains (pretrain_levers.py's domains-2 variant),
# with glibc's malloc and with tcmalloc preloaded (Debian's libtcmalloc-minimal4), alternating for
# ROUNDS rounds so that a change in the machine's speed hits both alike. Prints the median wall-s per step.
#   bash bench/allocators.sh            # ROUNDS=4 STEPS=30
set -euo pipefail
cd "$(dirname "$0")/.."
tcmalloc=$(ldconfig -p | awk '/libtcmalloc_minimal.so.4 / {print $NF; exit}')
[ -n "$tcmalloc" ] || { echo "allocators.sh: no libtcmalloc_minimal.so.4 (apt-get install libtcmalloc-minimal4)" >&2; exit 2; }
for round in $(seq "${ROUNDS:-4}"); do
  for allocator in glibc tcmalloc; do
    preload=""; [ "$allocator" = tcmalloc ] && preload=$tcmalloc
    wall=$(LD_PRELOAD=$preload .venv/bin/python bench/pretrain_levers.py --only domains-2 --steps "${STEPS:-30}" |
      awk -F'|' '/^\| domains-2/ {gsub(/ /, "", $4); print $4}')
    echo "round $round $allocator wall-s per step $wall"
  done
done
