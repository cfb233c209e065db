#!/usr/bin/env bash
# The web app on a lent GPU machine, in one call (docs/APP.md, docs/RELIABILITY.md): the engine tests that touch
# the app's GPU path, then load tests of `python app.py --device cuda` at 1, 16 and 64 users.
# Expects: wheels for gradio and what the GPU image lacks in .whl/ (docs/RELIABILITY.md lists them), and 1 MP
# camera photos in .devcarry/photos1mp (made from ../shared/evaldata/photos, which does not travel).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_coalesce.py tests/test_pipeline.py 2>&1 | tail -4 \
  | tee "$OUT/pytest.txt"
photos=.devcarry/photos1mp
python3 scripts/bench_render_threads.py --device cuda --seconds 3 --photo $photos/Canon_PowerShot_A560.jpg 2>&1 \
  | tee "$OUT/render_threads.txt"
python3 scripts/load_test.py --device cuda --photos $photos --users 1 --duration ${ONE_S:-40} --think 0.2 0.4 \
  --sample-every 5 --json "$OUT/load1.json" 2>&1 | tee "$OUT/load1.txt"
python3 scripts/load_test.py --device cuda --photos $photos --users 16 --processes 4 --duration ${MID_S:-60} \
  --sample-every 10 --json "$OUT/load16.json" 2>&1 | tee "$OUT/load16.txt"
python3 scripts/load_test.py --device cuda --photos $photos --users 64 --processes 8 --duration ${MANY_S:-120} \
  --sample-every 10 --json "$OUT/load64.json" 2>&1 | tee "$OUT/load64.txt"
