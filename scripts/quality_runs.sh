#!/usr/bin/env bash
# Every number and picture of docs/QUALITY.md, on the 2-core CPU (about 15 minutes; rembg's alpha matting is most
# of it). Usage: bash scripts/quality_runs.sh [DATASET] ; results in $OUT (default /tmp/quality), grids copied to
# docs/quality/. Needs requirements-bench.txt for the rembg rows and U2NET_HOME holding u2netp.onnx (see
# scripts/eval_rembg.py); without rembg those rows are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/evaldata/alphamatting-public}
OUT=${OUT:-/tmp/quality}
GRID=GT03,GT07,GT11,GT25
DECONT=GT03,GT05,GT07,GT17
mkdir -p "$OUT" docs/quality
EVAL="python -m matting.eval $DATA --device cpu --repeat 3"

$EVAL --raw --json "$OUT/raw.json" --out "$OUT/raw" --grid "$GRID"
$EVAL --refine-radius 4 --refine-eps 1e-3 --no-decontaminate --json "$OUT/fgf_r4_e1e-3.json"
$EVAL --no-decontaminate --json "$OUT/fgf_r8_e1e-4.json"
for variant in hr-gf sharpen band cascade levels; do
  $EVAL --variant "$variant" --no-decontaminate --json "$OUT/variant_$variant.json"
done
$EVAL --json "$OUT/default.json" --out "$OUT/default" --grid "$GRID"
python -m matting.eval "$DATA" --device cpu --foreground --json "$OUT/foreground.json"

# Guided-filter radius / eps sweep (alpha only: no decontamination, one timing run).
for radius in 4 6 8 12; do
  for eps in 1e-3 1e-4 1e-5; do
    python -m matting.eval "$DATA" --device cpu --no-decontaminate --refine-radius $radius --refine-eps $eps \
      --json "$OUT/sweep_r${radius}_e${eps}.json" >/dev/null 2>&1
  done
done

if python -c "import rembg" 2>/dev/null; then
  python scripts/eval_rembg.py "$DATA" --repeat 3 --fp32 --foreground --json "$OUT/rembg.json" | tee "$OUT/rembg.txt"
fi
python scripts/bench_edges.py --device cpu --json "$OUT/edges_cpu.json"

cp "$OUT/default/grid.png" docs/quality/grid_default.png
cp "$OUT/raw/grid.png" docs/quality/grid_raw.png
python - "$OUT" "$DATA" "$DECONT" <<'EOF'
# The decontamination grid comes from the default run's results for the DECONT images.
import sys
from pathlib import Path
from matting import eval as ev
from matting.pipeline import Pipeline
from matting.settings import EdgeSettings
out, data, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",")
samples = [s for s in ev.find_samples(data) if s.name in names]
pipe = Pipeline(device="cpu")
results = {s.name: pipe.matte(s.image) for s in samples}
ev.write_png(Path("docs/quality/decontamination.png"), ev.decontamination_grid(samples, results, pipe, EdgeSettings()))
EOF
python - "$OUT" <<'EOF'
# Summary rows for docs/QUALITY.md, as Markdown.
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def row(label, path):
    d = json.loads(path.read_text())
    m, u = d["mean"], d["mean_trimap1_unknown"]
    print(f"| {label} | {m['sad']:.2f} | {m['mse']:.4f} | {m['grad']:.2f} | {m['conn']:.2f} | "
          f"{d['ms_median']:.0f} | {d['ms_mean']:.0f} | {u['sad']:.2f} | {u['grad']:.2f} |")
for name in ["raw", "fgf_r4_e1e-3", "fgf_r8_e1e-4", "variant_hr-gf", "variant_sharpen", "variant_band",
             "variant_cascade", "variant_levels", "default"]:
    row(name, out / f"{name}.json")
for path in sorted(out.glob("sweep_*.json")):
    row(path.stem, path)
if (out / "rembg.json").exists():
    for label, d in json.loads((out / "rembg.json").read_text()).items():
        if "mean" not in d:
            continue
        m, u = d["mean"], d["mean_trimap1_unknown"]
        print(f"| {label} | {m['sad']:.2f} | {m['mse']:.4f} | {m['grad']:.2f} | {m['conn']:.2f} | "
              f"{d['ms_median']:.0f} | {d['ms_mean']:.0f} | {u['sad']:.2f} | {u['grad']:.2f} |")
EOF
