#!/usr/bin/env bash
# Where the web app's server spends its time under load: starts `python app.py`, drives it with
# scripts/load_test.py, and records the server with py-spy (all threads, then only the thread holding the GIL)
# as collapsed stacks. Summarise with: python scripts/summarise_profile.py OUT/spy_all.txt
#   OUT=/tmp/prof DEVICE=cuda USERS=64 bash scripts/profile_app.sh
set -uo pipefail
OUT=${OUT:-/tmp/prof}; DEVICE=${DEVICE:-cpu}; USERS=${USERS:-16}; PORT=${PORT:-7861}
PHOTOS=${PHOTOS:-assets/examples}; SPY=${SPY:-py-spy}; RATE=${RATE:-25}   # a higher rate falls behind on many threads
mkdir -p "$OUT"
python3 app.py --device "$DEVICE" --port "$PORT" > "$OUT/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 120); do grep -q "Ready in" "$OUT/server.log" && break; sleep 0.5; done
python3 scripts/load_test.py --processes ${PROCESSES:-8} --url "http://127.0.0.1:$PORT" --pid $server --users "$USERS" --photos "$PHOTOS" \
  --duration 55 --sample-every 10 --json "$OUT/load.json" > "$OUT/load.txt" 2>&1 &
load=$!
sleep 20
"$SPY" record --pid $server --duration 15 --rate "$RATE" --format raw --output "$OUT/spy_all.txt" --nonblocking
"$SPY" record --pid $server --duration 15 --rate "$RATE" --format raw --output "$OUT/spy_gil.txt" --nonblocking --gil
wait $load
cat "$OUT/load.txt"
