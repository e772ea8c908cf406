#!/usr/bin/env bash
# One device call that measures what only a GPU can show (issues 7 and 8), inside a time budget.
#
# Run from the repository root on a lent GPU machine (its image has python3 + torch; nothing is installed):
#   bash benchmarks/gpu_session.sh                # data in .devpack/data (docs/performance.md section 5)
#   BUDGET_S=540 STEPS="env gputests bench run1 all" bash benchmarks/gpu_session.sh
# Steps, in priority order (each gets what is left of BUDGET_S; a step that would start with < 30 s is skipped):
#   env       python / torch / GPU facts
#   gputests  pytest -m gpu (CUDA augmentation = CPU augmentation, CUDA-graph steps = eager steps, GPU JPEG decode)
#   bench     benchmarks/test_throughput.py on CUDA: ours vs the reference-style pipeline (JSON)
#   project   bench.py grid --dry-run: the calibrated projection of the CIFAR-100-LT grid on this GPU
#   run1      one timed full-schedule CIFAR-100-LT IF100 SGD stage 1 + ce (config.json: stage1_train_time_s)
#   all       the other seed-0 IF100 runs of every method on both extractors (issue 8), resumable
# Everything lands under $OUT (default ./gpu-out): one log per step, benchmark JSON, and results.tar.gz with the
# run folders (no checkpoints: the stage-1 cache stays on the machine in $LTBENCH_CACHE, default .devcache). The last lines printed
# are a summary table, so the device reply's output tail carries it.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PY:-python3}
OUT=${OUT:-gpu-out}
DATA=${DATA:-.devpack/data}
BUDGET_S=${BUDGET_S:-540}
STEPS=${STEPS:-env gputests bench project run1 all}
DEVICE=${DEVICE:-cuda}     # DEVICE=cpu RUN_ARGS="--epochs 1 --stage2-epochs 1" checks this script on a CPU
RUN_ARGS=${RUN_ARGS:-}
export LTBENCH_CACHE=${LTBENCH_CACHE:-.devcache}  # ignored folder in the tree: kept on a warm machine between calls
export LTBENCH_SHARED=${LTBENCH_SHARED:-$(dirname "$DATA")}   # benchmarks read $LTBENCH_SHARED/data
mkdir -p "$OUT"
RES="$OUT/results"
T0=$SECONDS
SUMMARY=()

left() { echo $((BUDGET_S - (SECONDS - T0))); }

step() {  # step NAME CMD...: run with the budget left as its timeout, log to $OUT/NAME.log
  local name=$1 t rc s0
  shift
  t=$(left)
  if ((t < 30)); then SUMMARY+=("$(printf '%-9s skipped (budget spent)' "$name")"); return; fi
  echo "== $name (budget left ${t}s): $*"
  s0=$SECONDS
  timeout "$t" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  SUMMARY+=("$(printf '%-9s rc=%-3s %5ss  %s' "$name" "$rc" $((SECONDS - s0)) "$(tail -n 1 "$OUT/$name.log" | cut -c1-90)")")
}

want() { [[ " $STEPS " == *" $1 "* ]]; }

need_data() {
  if [[ ! -f "$DATA/cifar100/cifar100_train_lt_if10.npz" || ! -f "$DATA/cifar100/cifar-100-python/test" ]]; then
    SUMMARY+=("$(printf '%-9s skipped: %s lacks cifar100/cifar100_train_lt_if10.npz or cifar100/cifar-100-python/test' "$1" "$DATA")")
    return 1
  fi
}

want env && step env bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; \
  $PY -c 'import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__, \
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no CUDA\")'"
want gputests && step gputests "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/
if want bench && need_data bench; then
  step bench env LTBENCH_BENCH_DEVICE="$DEVICE" LTBENCH_BENCH_OUT="$OUT/bench-cuda.json" \
    "$PY" -m pytest -q -p no:cacheprovider benchmarks/test_throughput.py --benchmark-json="$OUT/bench-cuda-pytest.json"
fi
if want project && need_data project; then
  step project "$PY" bench.py grid --datasets cifar100-lt --imbalance 100 --seeds 0 --data-root "$DATA" \
    --results "$RES" --device "$DEVICE" --dry-run $RUN_ARGS
fi
if want run1 && need_data run1; then
  step run1 "$PY" bench.py run --method ce --dataset cifar100-lt --imbalance 100 --stage1 sgd --data-root "$DATA" \
    --results "$RES" --device "$DEVICE" $RUN_ARGS
fi
if want all && need_data all; then
  step all "$PY" bench.py grid --datasets cifar100-lt --imbalance 100 --seeds 0 --data-root "$DATA" --results "$RES" \
    --device "$DEVICE" --calibration-steps 0 $RUN_ARGS
fi
RUNS=""
if [[ -d "$RES" ]]; then
  RUNS=$("$PY" - "$RES" <<'PYEOF'
import json, sys
from pathlib import Path
for m in sorted(Path(sys.argv[1]).glob("runs/*/*/seed*/metrics.json")):
    c, r = json.loads((m.parent / "config.json").read_text()), json.loads(m.read_text())
    print(f"{c['dataset_tag']}/{m.parent.parent.name}/{m.parent.name}{' (reduced)' if c.get('reduced') else ''}: "
          f"acc {r['acc']:.2f} few {r['acc_few'] or 0:.2f} nll {r['nll']:.3f} ece {r['ece']:.2f}; "
          f"stage1 {c.get('stage1_train_time_s') or 0:.0f}s stage2 {c.get('stage2_time_s') or 0:.0f}s on {c.get('environment', {}).get('device_name')}")
PYEOF
)
  tar -czf "$OUT/results.tar.gz" -C "$OUT" results && rm -rf "$RES"
fi
echo
echo "== summary ($((SECONDS - T0)) s of ${BUDGET_S} s; logs under $OUT)"
printf '%s\n' "${SUMMARY[@]}"
if [[ -f "$OUT/bench-cuda.json" ]]; then "$PY" -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1])), indent=1)[:1500])" "$OUT/bench-cuda.json"; fi
[[ -n "$RUNS" ]] && printf 'runs:\n%s\n' "$RUNS"
exit 0
