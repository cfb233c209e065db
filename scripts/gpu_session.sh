#!/usr/bin/env bash
# Everything we measure on a lent GPU machine, in one call (see docs/BENCHMARKS.md).
# Expects: wheels for packages the GPU image lacks in .whl/ (xxhash, fpng, lazy_loader), and photos in
# .devcarry/photos (copies of ../shared/evaldata/photos, which does not travel). Writes logs to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__)" | tee -a "$OUT/gpu.txt"
# Engine tests on the GPU machine (the web app's tests need gradio, which is not installed there).
python3 -m pytest -q -p no:cacheprovider --ignore=tests/test_app_api.py --ignore=tests/test_app_browser.py \
  --ignore=tests/test_upload_cap.py --ignore=tests/test_app_security.py --ignore=tests/test_app_limits.py \
  --ignore=tests/test_load_client.py --ignore=tests/test_readme_commands.py --ignore=tests/test_package.py \
  2>&1 | tail -6 | tee "$OUT/pytest.txt"
python3 -m matting.bench.inference --device cuda --repeat 60 2>&1 | tee "$OUT/inference.txt"
python3 -m matting.bench --device cuda --photos .devcarry/photos --repeat 9 --json "$OUT/bench.json" 2>&1 \
  | tee "$OUT/bench.txt"
python3 -m matting.bench --batch --device cuda --count 400 --photos .devcarry/photos 2>&1 | tee "$OUT/batch.txt"
