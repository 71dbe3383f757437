#!/usr/bin/env bash
# Several training runs from one stem bank at once, spread over every GPU of the machine.
#
#   scripts/gpu_train.sh BANK OUT NAME='TRAIN ARGS' [NAME='TRAIN ARGS' ...]
#
# Each NAME runs `instrumentd train BANK --out OUT/NAME.safetensors --device cuda:K TRAIN ARGS`, K
# taken in turn over the visible GPUs; logs go to OUT/NAME.log, histories and curves beside the
# checkpoints, and OUT/runs.tgz holds every log, history and curve once all have ended. Example:
#   scripts/gpu_train.sh stems out default='' left-out-musescore='--exclude-banks musescore,musescore-hq'
# Works from any directory; when `import instrumentd` fails, the repository is put on PYTHONPATH
# through a symlink named instrumentd. Environment: PYTHON (python3).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
[ $# -ge 3 ] || { usage; exit 2; }
BANK=$1
OUT=$2
shift 2
mkdir -p "$OUT"
make_importable gpu_train.sh
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
[ "$GPUS" -ge 1 ] || { echo "gpu_train.sh: no CUDA device" >&2; exit 1; }

names=()
pids=()
k=0
for spec in "$@"; do
    name=${spec%%=*}
    args=${spec#*=}
    device=cuda:$((k % GPUS))
    # shellcheck disable=SC2086  # the run's arguments are a word list
    "$PYTHON" -m instrumentd train "$BANK" --out "$OUT/$name.safetensors" --device "$device" $args \
        >"$OUT/$name.log" 2>&1 &
    names+=("$name")
    pids+=($!)
    echo "gpu_train.sh: $name on $device (pid $!)" >&2
    k=$((k + 1))
done
status=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    rc=$?
    echo "== ${names[$i]}: exit $rc" >&2
    tail -n 3 "$OUT/${names[$i]}.log" >&2
    [ $rc -eq 0 ] || status=1
done
(cd "$OUT" && tar czf runs.tgz --exclude='*.safetensors' --exclude=runs.tgz ./*)
exit $status
