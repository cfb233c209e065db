#!/usr/bin/env bash
# Side-by-side batch runs on a lent GPU machine (issue 17): the batch bench under each environment variant in
# turn, ROUNDS times, so that every variant sees the same host (the H200's local figure moved between 129 and 246
# images/s over one session). Prints one line per run: images/s, the first image's time, and each stage's busy
# share. Needs fpng importable (carry its wheel: .whl/ or the Ray slim tarball's folder on PYTHONPATH), or the
# encoders are threads. A variant "rev:<commit>" runs that commit's engine (its matting/ and assets/, extracted
# with git archive, once per commit) instead of the working tree's; "now" is the working tree as it is. Each line also says how busy
# the whole machine's cores were and what limited the run (bench --batch's limit line). "dir:<folder>" runs the
# engine in that folder (a tree prepared by hand: a lent machine's copy holds only the checked-out branch's commits,
# and its .git can be older than the working tree sent with it, so copy the working tree there, not HEAD).
# A variant may end in "@" and bench options of its own, commas for spaces ("now@--engines,4,--workers,3"), added
# after BENCH_ARGS.
#   VARIANTS="MATTING_REFINE_GRAPHS=1 MATTING_REFINE_GRAPHS=0" ROUNDS=2 PHOTOS=<photos> bash scripts/gpu_batch_ab.sh
#   VARIANTS="now rev:9d86552" BENCH_ARGS="--engines 2" bash scripts/gpu_batch_ab.sh
#   VARIANTS="now now@--engines,4 dir:/tmp/branch@--engines,4" bash scripts/gpu_batch_ab.sh
set -uo pipefail
OUT=${OUT:-/tmp/ab}; ROUNDS=${ROUNDS:-2}; COUNT=${COUNT:-2000}; PHOTOS=${PHOTOS:-../shared/evaldata/photos}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)   # absolute: each run starts in its variant's folder
export PYTHONUNBUFFERED=1
python3 -c "import fpng" 2>/dev/null || echo "fpng is missing: the encoders will be threads"
for round in $(seq 1 "$ROUNDS"); do
  for variant in ${VARIANTS:-NONE=1}; do
    json="$OUT/${variant//[^A-Za-z0-9_]/_}_$round.json"
    dir=$PWD; setting="NONE=1"; own=""
    case $variant in *@*) own=${variant#*@}; own=${own//,/ }; variant=${variant%%@*} ;; esac
    case $variant in
      # named by the commit, not the name given: a branch that moved since an earlier run is extracted afresh
      rev:*) commit=$(git rev-parse --short=12 "${variant#rev:}^{commit}") || { echo "[$variant] no such commit"; continue; }
             dir="$OUT/rev_$commit"
             [ -d "$dir" ] || { mkdir -p "$dir" && git archive "$commit" matting assets | tar -x -C "$dir"; } ;;
      dir:*) dir=$(realpath "${variant#dir:}") || continue ;;
      now) ;;
      *) setting=$variant ;;
    esac
    (cd "$dir" && env "$setting" timeout "${LIMIT:-150}" python3 -m matting.bench --batch --device "${DEVICE:-cuda}" \
      --count "$COUNT" --photos "$(realpath "$PHOTOS" 2>/dev/null || echo "$PHOTOS")" ${BENCH_ARGS:-} $own --json "$json") \
      > "$json.txt" 2>&1
    python3 - "$json" "$variant${own:+ $own}" "$round" <<'PY'
import json, sys
path, variant, rnd = sys.argv[1:]
try:
    ours = json.load(open(path))["ours"]
except (OSError, ValueError, KeyError) as exc:
    print(f"[{variant} round {rnd}] no result ({exc}): see {path}.txt")
    raise SystemExit
busy = " ".join(f"{k} {v:.0%}" for k, v in ours["utilisation"].items())
cpu = ours.get("machine_cpu_busy")   # absent from commits before 8c61596
cpu = "-" if cpu is None else f"{cpu:.0%}"
print(f"[{variant} round {rnd}] {ours['images_per_second']:.1f} images/s (steady "
      f"{ours.get('steady_images_per_second', 0):.1f}), first image {ours['first_image_s']:.2f} s, "
      f"peak RSS {ours['peak_rss_mib']:.0f} MiB, GPU {ours.get('peak_gpu_mib') or 0:.0f} MiB, machine's CPU {cpu}; "
      f"busy: {busy}; busiest threads {ours.get('busiest_threads')}")
PY
  done
done
