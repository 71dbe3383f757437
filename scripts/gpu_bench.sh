#!/usr/bin/env bash
# GPU tests and benchmarks in one go, as JSON lines in $OUT/bench.jsonl (logs beside it).
#
#   scripts/gpu_bench.sh [--quick] [STEP...]
#
# STEP is `tests` (pytest -m gpu) or a benchmark name (`instrumentd bench --help` lists them);
# none means the tests and every benchmark. Each step appends one JSON line: a benchmark's
# --json object, or {"step", "rc", "error"} when it failed. Works from any directory; when
# `import instrumentd` fails, the repository is put on PYTHONPATH through a symlink named
# instrumentd. Environment: PYTHON (python3), OUT (a new temporary folder), BENCH_DEVICE
# (cuda; cpu tries the script on a machine without a GPU), BENCH_TIMEOUT (seconds per step, 480).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
DEVICE=${BENCH_DEVICE:-cuda}
STEP_TIMEOUT=${BENCH_TIMEOUT:-480}
QUICK=()
STEPS=()
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=(--quick) ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "gpu_bench.sh: unknown option $arg" >&2; exit 2 ;;
        *) STEPS+=("$arg") ;;
    esac
done
start_results gpu_bench.sh bench.jsonl
environment_line "$DEVICE" >>"$JSONL"

if [ ${#STEPS[@]} -eq 0 ]; then
    mapfile -t STEPS < <("$PYTHON" -c "from instrumentd.clients.bench import BENCHES; print('tests'); print(*BENCHES, sep='\n')")
fi

status=0
for step in "${STEPS[@]}"; do
    echo "== $step" >&2
    if [ "$step" = tests ]; then
        # other suites' files may need packages this machine lacks: collect what can be collected
        timeout "$STEP_TIMEOUT" "$PYTHON" -m pytest -m gpu -q -rs --continue-on-collection-errors \
            >"$OUT/tests.log" 2>&1
        rc=$?
        tail -n 25 "$OUT/tests.log" >&2
        "$PYTHON" - "$rc" "$OUT/tests.log" >>"$JSONL" <<'EOF'
import json, sys
lines = open(sys.argv[2], errors="replace").read().strip().splitlines()
failed = [l for l in lines if l.startswith(("FAILED", "ERROR"))]
print(json.dumps({"step": "tests", "rc": int(sys.argv[1]), "summary": lines[-1] if lines else "", "failed": failed}))
EOF
    else
        timeout "$STEP_TIMEOUT" "$PYTHON" -m instrumentd bench "$step" --device "$DEVICE" --json "${QUICK[@]}" \
            >"$OUT/$step.out" 2>"$OUT/$step.err"
        rc=$?
        cat "$OUT/$step.err" >&2
        if [ $rc -eq 0 ] && tail -n 1 "$OUT/$step.out" | "$PYTHON" -c "import json, sys; json.loads(sys.stdin.read())" 2>/dev/null; then
            tail -n 1 "$OUT/$step.out" >>"$JSONL"
        else
            cat "$OUT/$step.out" >>"$OUT/$step.err"
            failed_step_line "$step" "$rc" "$OUT/$step.err" >>"$JSONL"
        fi
    fi
    [ $rc -eq 0 ] || status=1
done
echo "gpu_bench.sh: results in $JSONL" >&2
exit $status
