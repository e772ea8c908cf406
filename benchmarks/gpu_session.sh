#!/usr/bin/env bash
# One 9-minute device call (issue 16): a short correctness step, the batched-vs-one-at-a-time benchmark, then as
# many whole stage-1 groups as fit, each group = every seed x {SGD, SWA} network of one dataset and IF trained as
# one stacked network (bench.py grid --batched), followed by the stage-2 methods of its runs.
#
# Run from the repository root on a lent GPU machine (its image has python3 + torch; nothing is installed):
#   bash benchmarks/gpu_session.sh                      # data in .devpack/data (docs/performance.md section 5)
#   TINY=1 bash benchmarks/gpu_session.sh               # dry run on a CPU: tiny sets, 1-epoch schedule (minutes)
# Settings (environment):
#   BUDGET_S=540     the whole call's budget; each step gets what is left of it, a step that would start with
#                    less than 30 s is skipped; a group's stack of stage-1 networks starts only if the grid's
#                    calibrated projection fits what is left (bench.py grid --time-budget)
#   GRID_GROUPS="cifar100-lt:100 cifar100-lt:50 cifar100-lt:10 cifar10-lt:100 cifar10-lt:50 cifar10-lt:10"
#                    dataset:IF groups in priority order (issue 14's); SEEDS=0,1,2 (up to 6 stage-1 networks a group)
#   RESULTS=results  the store the grid writes into: by default the committed one in this copy of the tree, so
#                    every finished run is skipped and only the pending networks of a group train
#                    (TINY: $OUT/tiny-results)
#   METHODS=         comma-separated stage-2 methods (default: every registered method)
#   STEPS="env gputests bench groups"    which steps run
#   RUN_ARGS=        extra bench.py grid options (e.g. "--epochs 20" for a reduced schedule)
# Everything lands under $OUT (default ./gpu-out), at most 8 files: logs.tar.gz (one log per step), the
# benchmark JSON (ratio table and pytest-benchmark's), results.tar.gz (the run folders this call finished, paths
# from the repository root, so `tar -xzf results.tar.gz` here puts them in place; no checkpoints: the stage-1
# cache stays on the machine in $LTBENCH_CACHE, default .devcache, so a warm machine resumes) and summary.txt.
# The last lines printed are the summary (per group: wall time, stage-1 images/s; the projection for the rest).
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-gpu-out}
TINY=${TINY:-0}
if [[ "$TINY" == 1 ]]; then  # a CPU dry run of the whole script: the bundled tiny sets, 1 + 1 epochs
  [[ -x .venv/bin/python ]] && PY=${PY:-.venv/bin/python}
  DEVICE=${DEVICE:-cpu}
  GRID_GROUPS=${GRID_GROUPS:-cifar10-lt-tiny:0 cifar100-lt-tiny:0}
  SEEDS=${SEEDS:-0,1}
  METHODS=${METHODS:-ce,crt}
  RUN_ARGS=${RUN_ARGS:---epochs 1 --stage2-epochs 1 --preset cifar-tiny}
  RESULTS=${RESULTS:-$OUT/tiny-results}   # never the committed store (1-epoch runs): its tar unpacks beside it
  BENCH_M=${BENCH_M:-1nets or 3nets}
  EQUIV_K=${EQUIV_K:-float32}   # the float64 equivalence test takes minutes on a shared 2-core CPU
  export LTBENCH_BENCH_STEPS=${LTBENCH_BENCH_STEPS:-1} LTBENCH_BENCH_ROUNDS=${LTBENCH_BENCH_ROUNDS:-1}
fi
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.devpack/data}
BUDGET_S=${BUDGET_S:-540}
STEPS=${STEPS:-env gputests bench groups}
GRID_GROUPS=${GRID_GROUPS:-cifar100-lt:100 cifar100-lt:50 cifar100-lt:10 cifar10-lt:100 cifar10-lt:50 cifar10-lt:10}
RESULTS=${RESULTS:-results}
SEEDS=${SEEDS:-0,1,2}
METHODS=${METHODS:-}
RUN_ARGS=${RUN_ARGS:-}
BENCH_M=${BENCH_M:-}       # pytest -k filter of the benchmark's M values, e.g. "1nets or 6nets"; empty: 1, 3, 6, 12
EQUIV_K=${EQUIV_K:-}       # pytest -k filter of tests/test_batched.py; empty: all
export LTBENCH_CACHE=${LTBENCH_CACHE:-.devcache}  # ignored folder in the tree: kept on a warm machine between calls
export LTBENCH_SHARED=${LTBENCH_SHARED:-$(dirname "$DATA")}   # benchmarks read $LTBENCH_SHARED/data
mkdir -p "$OUT/logs"
RES="$RESULTS"
mkdir -p "$RES/runs"
# every finished run with its metrics.json's mtime: a run this call finishes (or re-runs) adds or changes a line,
# whatever the clocks of the copied files say; only those come back
finished_runs() {
  (cd "$(dirname "$RES")" && find "$(basename "$RES")/runs" -name metrics.json -path '*/seed*/*' -printf '%p %T@\n' \
    | sort)
}
finished_runs >"$OUT/runs-before.txt"
T0=$SECONDS
SUMMARY=()
GROUP_ROWS=()

left() { echo $((BUDGET_S - (SECONDS - T0))); }

step() {  # step NAME CMD...: run with the budget left as its timeout, log to $OUT/logs/NAME.log
  local name=$1 t rc s0
  shift
  t=$(left)
  if ((t < 30)); then SUMMARY+=("$(printf '%-16s skipped (budget spent)' "$name")"); return 1; fi
  echo "== $name (budget left ${t}s): $*"
  s0=$SECONDS
  timeout "$t" "$@" >"$OUT/logs/$name.log" 2>&1
  rc=$?
  LAST_S=$((SECONDS - s0))
  SUMMARY+=("$(printf '%-16s rc=%-3s %5ss  %s' "$name" "$rc" "$LAST_S" \
    "$(tail -n 1 "$OUT/logs/$name.log" | cut -c1-90)")")
  return $rc
}

want() { [[ " $STEPS " == *" $1 "* ]]; }

have_data() {  # have_data DATASET: the real CIFAR files the loader needs (tiny sets are bundled)
  case $1 in
    *-tiny) return 0 ;;
    cifar100-lt) [[ -f "$DATA/cifar100/cifar100_train_lt_if10.npz" && -f "$DATA/cifar100/cifar-100-python/test" ]] ;;
    cifar10-lt) [[ -f "$DATA/cifar10/cifar10_train_lt_if10.npz" \
                   && -f "$DATA/cifar10/cifar-10-batches-py/test_batch" ]] ;;
    *) return 1 ;;
  esac
}

want env && step env bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null; \
  $PY -c 'import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__, \
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no CUDA\")'"
# correctness: the GPU tests (CUDA augmentation, CUDA-graph steps), then batched = alone (tests/test_batched.py)
if want gputests; then
  [[ "$DEVICE" == cuda ]] && step gputests "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/
  step equivalence "$PY" -m pytest -q -x -p no:cacheprovider tests/test_batched.py ${EQUIV_K:+-k "$EQUIV_K"}
fi
if want bench; then
  step bench env LTBENCH_BENCH_DEVICE="$DEVICE" LTBENCH_BENCH_OUT="$OUT/bench-batched.json" \
    "$PY" -m pytest -q -p no:cacheprovider benchmarks/test_batched_throughput.py ${BENCH_M:+-k "$BENCH_M"} \
    --benchmark-json="$OUT/bench-batched-pytest.json"
fi
if want groups; then
  for g in $GRID_GROUPS; do
    ds=${g%%:*} imb=${g##*:}
    if ! have_data "$ds"; then
      SUMMARY+=("$(printf '%-16s skipped: no data for %s under %s' "group $g" "$ds" "$DATA")"); continue
    fi
    t=$(($(left) - 30))   # the grid starts a stack only if its calibrated projection fits this (--time-budget)
    if ((t < 30)); then SUMMARY+=("$(printf '%-16s not started: %ss left' "group $g" "$(left)")"); continue; fi
    if step "group-$ds-$imb" "$PY" bench.py grid --dataset "$ds" --imbalance "$imb" --seed "$SEEDS" \
         ${METHODS:+--method "$METHODS"} --data-root "$DATA" --results "$RES" --device "$DEVICE" --batched \
         --time-budget "${t}s" $RUN_ARGS \
       && grep -q "^grid finished: [1-9]" "$OUT/logs/group-$ds-$imb.log"; then   # a group that ran something
      GROUP_ROWS+=("$ds $imb $LAST_S")
    fi
  done
fi
PROJ=""
if ((${#GROUP_ROWS[@]})); then
  # what is left: the grid's own plan of the whole CIFAR-LT grid, with this call's arguments (schedule, preset...)
  # (one dataset at a time: a dataset whose data is not here but has finished runs fails only its own plan)
  : >"$OUT/plan.txt"
  real=0
  for row in "${GROUP_ROWS[@]}"; do [[ ${row%% *} == *-tiny ]] || real=1; done
  for ds in cifar100-lt cifar10-lt; do
    ((real)) || break   # tiny groups only: there is no projection to make
    timeout 60 "$PY" bench.py grid --dataset "$ds" --imbalance 100,50,10 --seed "$SEEDS" \
      ${METHODS:+--method "$METHODS"} --data-root "$DATA" --results "$RES" --device "$DEVICE" --dry-run \
      --calibration-steps 0 $RUN_ARGS >>"$OUT/plan.txt" 2>&1 || echo "plan of $ds failed (rc $?)" >>"$OUT/plan.txt"
  done
  PROJ=$("$PY" - "$OUT/logs" "$OUT/plan.txt" "${GROUP_ROWS[@]}" <<'PYEOF'
import collections, re, statistics, sys
from pathlib import Path
from ltbench.data.cifar_lt import lt_class_counts
logs, plan, rows = Path(sys.argv[1]), Path(sys.argv[2]).read_text(), [r.split() for r in sys.argv[3:]]
def n_train(ds, imb):
    if ds.endswith("-tiny"):
        return None
    c = 100 if ds == "cifar100-lt" else 10
    return sum(lt_class_counts(c, 50000 // c, int(imb)))
per_img = []  # wall seconds per (stage-1 network x train image), stage 2 of its runs included
for ds, imb, wall in rows:
    text = (logs / f"group-{ds}-{imb}.log").read_text()
    rates = [float(x.replace(",", ""))
             for x in re.findall(r"stage 1 batched \[\d+\] epoch \d+/\d+ .* (\d[\d,]*) img/s \(", text)]
    took = re.search(r"stage 1 batched: (\d+) networks .* in (\S+)", text)
    planned = re.search(r"(\d+) stage-1 trainings? needed", text)
    nets = int(took.group(1)) if took else int(planned.group(1)) if planned else 0  # networks trained here
    n = n_train(ds, imb)
    print(f"group {ds} IF{imb}: wall {wall}s for {nets} stage-1 network(s) + stage 2 "
          f"(stage 1 {took.group(2) if took else '?'}); stage-1 {statistics.median(rates) if rates else 0:,.0f} img/s "
          f"aggregate (median over {len(rates)} epochs)" + (f"; {n:,} train images" if n else ""))
    if n and nets:
        per_img.append(float(wall) / (n * nets))
if not per_img:
    print("projection: none (tiny sets, or no stage-1 network trained)")
else:
    left = collections.Counter(m.groups() for m in re.finditer(
        r"^  (cifar\d+-lt)-if(\d+)(?:-subset\d+)? +seed\d+ \w+ .*\(stage 1 to train\)", plan, re.M))
    rest = [(ds, int(imb), k) for (ds, imb), k in left.items()]
    for line in re.findall(r"^plan of .* failed .*$", plan, re.M):
        print(f"projection: {line} (its networks are not counted; see the plan's error in the logs)")
    if rest:
        s = statistics.mean(per_img) * sum(k * n_train(ds, imb) for ds, imb, k in rest)
        print(f"projection: {sum(k for *_, k in rest)} stage-1 networks left in {len(rest)} settings ~{s:.0f}s "
              f"(~{s / 540:.1f} more 9-minute calls), scaling the measured wall time per network and train image")
    else:
        print("projection: no stage-1 network left in the grid")
PYEOF
)
fi
RUNS=""
top=$(dirname "$RES")   # paths in the tar start at the store's folder name ("results/runs/..."): unpack at the root
finished_runs | comm -13 "$OUT/runs-before.txt" - | cut -d' ' -f1 | xargs -r -n1 dirname >"$OUT/runs-new.txt"
[[ -f "$OUT/plan.txt" ]] && mv "$OUT/plan.txt" "$OUT/logs/plan.txt"
rm -f "$OUT/runs-before.txt"
if [[ -s "$OUT/runs-new.txt" ]]; then
  RUNS=$("$PY" - "$top" "$OUT/runs-new.txt" <<'PYEOF'
import json, sys
from pathlib import Path
for line in Path(sys.argv[2]).read_text().split():
    d = Path(sys.argv[1]) / line
    c, r = json.loads((d / "config.json").read_text()), json.loads((d / "metrics.json").read_text())
    print(f"{c['dataset_tag']}/{d.parent.name}/{d.name}{' (reduced)' if c.get('reduced') else ''}: "
          f"acc {r['acc']:.2f} nll {r['nll']:.3f}; stage1 {c.get('stage1_train_time_s') or 0:.0f}s "
          f"stage2 {c.get('stage2_time_s') or 0:.0f}s")
PYEOF
)
  tar -czf "$OUT/results.tar.gz" -C "$top" -T "$OUT/runs-new.txt"
fi
[[ "$RES" == "$OUT/tiny-results" ]] && rm -rf "$RES"
rm -f "$OUT/runs-new.txt"
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
{
  echo "== summary ($((SECONDS - T0)) s of ${BUDGET_S} s, device $DEVICE)"
  printf '%s\n' "${SUMMARY[@]}"
  [[ -n "$PROJ" ]] && printf '%s\n' "$PROJ"
  if [[ -f "$OUT/bench-batched.json" ]]; then
    "$PY" -c "
import json, sys
s = json.load(open(sys.argv[1]))
print(f\"benchmark on {s['device_name']}: batched vs one at a time, stage-1 img/s\")
for r in s['rows']:
    print(f\"  {r['metric']:<20} batched {r['ours']:>10,.0f}  one at a time {r['reference']:>10,.0f}\"
          f\"  x{r['ratio']:.2f}\")
" "$OUT/bench-batched.json"
  fi
  [[ -n "$RUNS" ]] && printf 'runs (%s):\n%s\n' "$(echo "$RUNS" | wc -l)" "$RUNS"
} | tee "$OUT/summary.txt"
exit 0
