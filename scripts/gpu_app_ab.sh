#!/usr/bin/env bash
# The web app under load, this checkout and an older one side by side on a lent GPU machine (issue 12): the two
# alternate ROUNDS times so that both see the same host (its figures move between calls). One line per run.
# BEFORE is a copy of the older code that travels with the call (or several, separated by spaces; each named by
# its folder), e.g.
#   mkdir -p .devcarry/before && git archive <commit> app.py matting demo assets scripts | tar -x -C .devcarry/before
# and the photos are 1 MP camera photos (.devcarry/photos1mp, made from ../shared/evaldata/photos). Needs what
# scripts/gpu_app_session.sh needs (gradio's wheels installed on PYTHONPATH).
#   BEFORE=.devcarry/before PHOTOS=.devcarry/photos1mp USERS=64 PROCESSES=8 DURATION=60 ROUNDS=2 \
#     bash scripts/gpu_app_ab.sh
# RAMP=S lets the visitors arrive over S seconds (load_test.py --ramp): only for trees from 5122364 on, whose
# load test knows it.
set -uo pipefail
OUT=${OUT:-/tmp/app_ab}; ROUNDS=${ROUNDS:-2}
: "${BEFORE:?set BEFORE to a folder holding the older code}" "${PHOTOS:?set PHOTOS to a folder of photos}"
photos=$(realpath "$PHOTOS")
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False
for round in $(seq 1 "$ROUNDS"); do
  for tree in . $BEFORE; do
    name=now; [ "$tree" = . ] || name=$(basename "$tree")
    json="$(realpath "$OUT")/${name}_$round.json"
    (cd "$tree" && timeout "${LIMIT:-240}" python3 scripts/load_test.py --device "${DEVICE:-cuda}" --photos "$photos" \
      --users "${USERS:-64}" --processes "${PROCESSES:-8}" --duration "${DURATION:-60}" ${RAMP:+--ramp "$RAMP"} \
      --sample-every 10 \
      --json "$json") > "$json.txt" 2>&1
    python3 - "$json" "$name" "$round" <<'PY'
import json, sys
path, name, rnd = sys.argv[1:]
try:
    report = json.load(open(path))
except (OSError, ValueError) as exc:
    print(f"[{name} round {rnd}] no result ({exc}): see {path}.txt")
    raise SystemExit
kinds = report["kinds"]
cells = " ".join(f"{kind} {k['p50_ms']}/{k['p95_ms']} ms"
                 + (f" (handler {k['server_p50_ms']}/{k['server_p95_ms']})" if k.get("server_p50_ms") else "")
                 for kind, k in kinds.items())
errors = sum(k["errors"] + k["timeouts"] + k["rejected_queue_full"] for k in kinds.values())
cpu = sorted(s["cpu_pct"] for s in report["samples"][1:]) or [0]
print(f"[{name} round {rnd}] {report['throughput_rps']:.1f} requests/s, {errors} errors; p50/p95: {cells}; "
      f"server CPU median {cpu[len(cpu) // 2]:.0f} %; RSS {report['rss_trend'].get('change_pct')} %; "
      f"event loop p50/p95 {report.get('ping', {}).get('p50_ms')}/{report.get('ping', {}).get('p95_ms')} ms; "
      f"clients' CPU {report.get('client_cpu_pct')} %")
for kind, named in report.get("handler_parts_ms", {}).items():   # where a request waited (load_test.py)
    print(f"    {kind} parts p50/p95: " + ", ".join(f"{n} {a:.0f}/{b:.0f}" for n, (a, b) in named.items()))
trends = (report.get("memory_log") or {}).get("trends") or {}   # the server's own memory log (load_test.py)
if trends:
    print("    memory, last third against the middle: " + ", ".join(
        f"{name} {t['change_pct']:+.1f} %" for name, t in trends.items() if t.get("change_pct") is not None))
if report.get("steady"):   # --ramp: the same after the visitors had all arrived
    print(f"    after {report['warm_up_s']:g} s: " + " ".join(f"{kind} {k['p50_ms']}/{k['p95_ms']} ms"
                                                      for kind, k in report["steady"].items()))
    for kind, named in report["steady_parts_ms"].items():
        print(f"    after it, {kind} parts p50/p95: " + ", ".join(f"{n} {a:.0f}/{b:.0f}" for n, (a, b) in named.items()))
PY
  done
done
