#!/usr/bin/env bash
# Mutation testing (issue 19) with mutmut, in a scratch clone so the checkout is never touched:
#   bash scripts/mutation_test.sh [MODULES] [TESTS] [SECONDS]
#   bash scripts/mutation_test.sh "matting/render.py matting/settings.py" \
#        "tests/test_edge_behaviour.py tests/test_pipeline.py tests/test_cache_settings.py tests/test_foreground.py" 1500
# Needs `pip install mutmut` (3.x; not a CI requirement) in the python on PATH (an activated venv). Prints the survivors with their diffs; docs/TESTING.md
# lists what each surviving mutant means. Bounded by SECONDS (default 1500); what did not run is "not checked".
set -uo pipefail
MODULES=${1:-"matting/render.py matting/settings.py"}
TESTS=${2:-"tests/test_edge_behaviour.py tests/test_pipeline.py tests/test_cache_settings.py tests/test_foreground.py"}
SECONDS_MAX=${3:-1500}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
git clone -q "$ROOT" "$WORK/repo"
cd "$WORK/repo"
quote() { printf '"%s", ' $1 | sed 's/, $//'; }
cat >> pyproject.toml <<TOML

[tool.mutmut]
source_paths = ["matting", "demo"]
only_mutate = [$(quote "$MODULES")]
pytest_add_cli_args_test_selection = [$(quote "$TESTS")]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]
also_copy = ["assets", "scripts", "docs", "README.md", "pyproject.toml"]
TOML
# mutmut runs the tests once, then forks a child per mutant: a child that enters an OpenMP parallel region the
# parent had used waits for ever (torch's CPU threads; every handler mutant timed out). One thread per process
# keeps the children working; mutmut still runs one child per core.
export OMP_NUM_THREADS=1
timeout "$SECONDS_MAX" python -m mutmut run > "$WORK/run.log" 2>&1
rc=$?
echo "mutmut run ended (rc $rc); tally:"
[ "$rc" -ne 0 ] && tr '\r' '\n' < "$WORK/run.log" | grep -v "^\s*$" | tail -30
python -m mutmut results --all true 2>/dev/null | awk -F': ' '{print $2}' | sort | uniq -c
for mutant in $(python -m mutmut results 2>/dev/null | grep survived | awk '{print $1}' | tr -d ':'); do
  echo "== $mutant"
  python -m mutmut show "$mutant" 2>/dev/null | grep '^[-+] '
done
