#!/usr/bin/env bash
# The --ray batch bench on a lent GPU machine (docs/SCALE.md). Its image has no Ray: carry a slimmed Ray wheel
# as .raycarry/rayslim.tar.xz (ray 2.60.0 cp312 unpacked without ray/jars, rllib, llm, tune, train and the
# dashboard's web client, plus jsonschema, referencing, rpds-py, jsonschema-specifications and fpng; about 29 MB)
# and photos as .raycarry/photos (copies of ../shared/evaldata/photos scaled to 3.5 MP, which do not travel).
#   REPEAT=3 PER_GPU=2 CALLS=4 bash scripts/gpu_ray_bench.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/site "$OUT" && tar -xJf .raycarry/rayslim.tar.xz -C /tmp/site
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
export MATTING_RAY_ACTORS_PER_GPU=${PER_GPU:-2} MATTING_RAY_ACTOR_CALLS=${CALLS:-4}
nproc; nvidia-smi --query-gpu=name --format=csv,noheader
for i in $(seq 1 "${REPEAT:-3}"); do
  python3 -m matting.bench --batch --device cuda --count "${COUNT:-2000}" --photos .raycarry/photos --ray \
    --json "$OUT/ray_$i.json" 2>&1 | grep -v "^\s*$" | tee "$OUT/ray_$i.txt" | tail -12
done
