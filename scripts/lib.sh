# Sourced by the scripts here, once they have set REPO (the checkout): what they share.

PYTHON=${PYTHON:-python3}  # the interpreter, unless the environment names one

# usage: the script's leading comment block (after the #! line), without the comment marks
usage() {
    awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"
}

# make_importable NAME: makes `import instrumentd` work from REPO when it is not installed, through a
# symlink named instrumentd in a temporary folder put on PYTHONPATH (removed on exit; the checkout
# itself is untouched). NAME prefixes its messages.
make_importable() {
    "$PYTHON" -c "import instrumentd" 2>/dev/null && return 0
    SHIM=$(mktemp -d)
    trap 'rm -rf "$SHIM"' EXIT  # removes the link, not what it points to
    ln -s "$REPO" "$SHIM/instrumentd"
    export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
    "$PYTHON" -c "import instrumentd" || { echo "$1: cannot import instrumentd from $REPO" >&2; exit 1; }
    echo "$1: instrumentd imported through $SHIM/instrumentd -> $REPO" >&2
}

# start_results NAME FILE: sets OUT (made absolute; a new temporary folder unless given) and
# JSONL=$OUT/FILE, moves to REPO and makes instrumentd importable
start_results() {
    OUT=${OUT:-$(mktemp -d)}
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    JSONL="$OUT/$2"
    cd "$REPO" || exit 1
    make_importable "$1"
}

# environment_line DEVICE: one JSON line, the Python, torch and CUDA versions, DEVICE, the CPUs and GPUs
environment_line() {
    "$PYTHON" - "$1" <<'EOF'
import json, os, platform, sys, torch
print(json.dumps({"step": "environment", "python": platform.python_version(), "torch": torch.__version__,
                  "cuda": torch.version.cuda, "device": sys.argv[1], "cpus": os.cpu_count(),
                  "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}))
EOF
}

# failed_step_line STEP RC LOG: one JSON line {"step", "rc", "timed_out", "error": LOG's last 5 lines}
failed_step_line() {
    "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import json, sys
step, rc, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tail = open(log, errors="replace").read().strip().splitlines()[-5:]
print(json.dumps({"step": step, "rc": rc, "timed_out": rc in (124, 137), "error": " | ".join(tail)}))
EOF
}

# summary_line STEP: one line of the figures of the bench JSON object on stdin, for a reader of stderr
summary_line() {
    "$PYTHON" -c '
import json, sys
step, obj = sys.argv[1], json.loads(sys.stdin.read())
keys = ("sources", "streams", "processes", "windows", "dropped_windows", "p50_ms", "p99_ms", "serving_s", "first_window_s",
        "stop_s", "cpu_cores", "gpu_util_percent", "steps_per_s", "step_mean_ms", "windows_per_pass")
for row in obj.get("rows", [obj]):
    print(step + ": " + ", ".join(f"{k} {row[k]}" for k in keys if row.get(k) is not None))
' "$1"
}
