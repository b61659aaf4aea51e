#!/usr/bin/env bash
# The DINO recipe sweep behind docs/RESULTS.md: trains tiny DINO variants at the main job's
# budget, each with the k-NN monitor on, and prints one table (monitored k-NN of teacher and
# student at step 0, at the end and at their best; final loss and teacher entropy).
#   scripts/dino_sweep.sh [--out DIR] [--steps N] [--jobs J] [--config CFG] [--only NAME[,NAME]]
# Each variant is a name and --set overrides on top of the config (default: the tiny DINO
# preset); edit VARIANTS to try others. Finished runs are reused, so an interrupted sweep
# resumes where it stopped. J runs go at once, each with 2/J threads (default J = 2).
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/dino-sweep steps=600 jobs=2 config=training/configs/dino-tiny.json only=""
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--steps N] [--jobs J] [--config CFG] [--only NAME[,NAME]]" >&2; exit 2 ;;
  esac
done
[[ -x build/sparo ]] || { echo "dino_sweep: build/sparo not found; run scripts/build.sh first" >&2; exit 1; }

# name | overrides (space-separated key=value)
VARIANTS=(
  "preset|"
  "momentum-0.99|momentum_teacher=0.99"
  "teacher-temp-0.02|teacher_temp=0.02 warmup_teacher_temp=0.02"
  "dino-lr-and-clip|lr_reference_batch=256 grad_clip_mode=per_parameter"
  "gentle-crops|global_scale_min=0.6 local_scale_min=0.25 local_scale_max=0.5"
)

common="steps=$steps warmup_steps=$((steps / 10)) freeze_last_layer_steps=$((steps / 10)) checkpoint_every=$steps eval_every=$((steps / 6)) log_every=5"
threads=$(( $(nproc) / jobs )); ((threads >= 1)) || threads=1
mkdir -p "$out"
run_one() {
  local name=$1 overrides=$2 dir="$out/$1"
  [[ -f $dir/model.safetensors ]] && return 0
  rm -rf "$dir"
  local sets=()
  for kv in $common $overrides; do sets+=(--set "$kv"); done
  build/sparo --threads "$threads" train dino --config "$config" "${sets[@]}" --out "$dir" > "$out/$name.log" 2>&1 ||
    echo "dino_sweep: $name failed, see $out/$name.log" >&2
}
echo "dino_sweep: ${#VARIANTS[@]} variants × $steps steps, $jobs at a time, $threads thread(s) each, in $out (load: $(cut -d' ' -f1-3 /proc/loadavg))"
for v in "${VARIANTS[@]}"; do
  name=${v%%|*} overrides=${v#*|}
  [[ -z $only || ",$only," == *",$name,"* ]] || continue
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n; done
  echo "  $name: $overrides"
  run_one "$name" "$overrides" &
done
wait
/usr/bin/python3 - "$out" "${VARIANTS[@]}" <<'PY'
import json, os, sys
out = sys.argv[1]
print(f"\n{'variant':<22} {'kNN t@0':>7} {'t end':>6} {'t best':>6} {'s end':>6} {'s best':>6} {'loss':>6} {'H(t)':>5}  overrides")
for v in sys.argv[2:]:
    name, overrides = v.split("|", 1)
    path = os.path.join(out, name, "metrics.jsonl")
    if not os.path.exists(path):
        continue
    rows = [json.loads(l) for l in open(path) if l.strip()]
    mon = [r for r in rows if "knn_teacher" in r]
    log = [r for r in rows if "loss" in r]
    if not mon or not log:
        continue
    t = [r["knn_teacher"] for r in mon]; s = [r["knn_student"] for r in mon]
    print(f"{name:<22} {t[0]:7.3f} {t[-1]:6.3f} {max(t):6.3f} {s[-1]:6.3f} {max(s):6.3f} {log[-1]['loss']:6.3f} "
          f"{log[-1].get('teacher_entropy', float('nan')):5.2f}  {overrides}")
PY
