#!/usr/bin/env bash
# Where the batch engine's own process spends its time (issue 17): the batch bench recorded by py-spy, once with
# every thread's samples (idle included: a thread waiting on the GIL or a CUDA sync shows where it waits) and once
# with only the thread holding the GIL, plus the GPU's utilisation sampled by nvidia-smi meanwhile.
# fpng must import (on a lent machine: the carried wheels' folder on PYTHONPATH), or the encoders are threads and
# the profile is of another engine. Summarise with: python scripts/summarise_profile.py OUT/spy_all.txt
# [--match matting-render]
#   OUT=/tmp/prof PHOTOS=<photos> COUNT=2000 bash scripts/profile_batch.sh
set -uo pipefail
OUT=${OUT:-/tmp/prof}; SPY=${SPY:-py-spy}; RATE=${RATE:-40}; COUNT=${COUNT:-2000}
PHOTOS=${PHOTOS:-../shared/evaldata/photos}; DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
bench=(python3 -m matting.bench --batch --device "$DEVICE" --count "$COUNT" --photos "$PHOTOS" ${BENCH_ARGS:-})
python3 -c "import fpng" 2>/dev/null || echo "fpng is missing: the encoders will be threads"
(nvidia-smi dmon -s u -d 1 > "$OUT/gpu.txt" 2>&1 &) 2>/dev/null
"$SPY" record --rate "$RATE" --format raw --threads --idle --nonblocking --output "$OUT/spy_all.txt" -- "${bench[@]}" \
  > "$OUT/bench_all.txt" 2>&1
"$SPY" record --rate "$RATE" --format raw --threads --gil --nonblocking --output "$OUT/spy_gil.txt" -- "${bench[@]}" \
  > "$OUT/bench_gil.txt" 2>&1
pkill -f "nvidia-smi dmon" || true
grep -E "images/s|limiting" "$OUT"/bench_*.txt
