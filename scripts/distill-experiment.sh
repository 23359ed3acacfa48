#!/usr/bin/env bash
# The distillation experiment (docs/distillation.md) on Fashion-MNIST, on the CPU. Two teachers
# trained on the 60k training images (A: clip-small, B: clip-tiny; or given as checkpoints), then a
# clip-micro student trained for one fixed budget (one epoch of the first STUDENT_SHARDS training
# shards) with the same augmentation (AUG, OpenCLIP's --aug-cfg) in every way:
#   scratch      at each learning rate of LRS (the fair baseline: the best of them is reported)
#   online       the single teacher runs on every batch (--distill-pretrained), sees the student's views
#   stored-eval  stored targets of the evaluation crops (`distill-cache`)
#   stored-K     stored targets of K stored views per sample (`distill-cache --augmentations K`)
#   ensemble     stored-K targets of both teachers, probabilities averaged (MobileCLIP)
# the distilled ones at the best scratch learning rate, each once per seed (a seed fixes the initial
# weights and the data order). STUDENT_EPOCHS epochs of the set. Prints the table of zero-shot top-1 on the 10k test images (mean,
# sample standard deviation over the seeds, each seed) and wall times, cache building included,
# and writes it to RUNS/results.md.
#
# Usage: bash scripts/distill-experiment.sh      (from the project root; shares demo/ with demo.sh)
# Env:   CLIPC             a clipc binary to use (default: build/cli/clipc, built first)
#        CLIPC_VOCAB       CLIP's bpe_simple_vocab_16e6.txt.gz, if you have it (else a trained BPE)
#        DISTILL_OUT       data folder (default demo); runs go to DISTILL_OUT/distill/<date>/
#        TEACHER_A, TEACHER_B   existing teacher checkpoints (skip training them); their training
#                         wall times (s) in TEACHER_A_SECONDS, TEACHER_B_SECONDS, for the table
#        TEACHER_A_SAMPLES, TEACHER_B_SAMPLES   samples each teacher trains on (60000, 30000)
#        SINGLE            the teacher of the single-teacher ways: A or B (default A)
#        STUDENT_SHARDS    the students' set: the first N shards of 10k training images (default 1)
#        STUDENT_EPOCHS    the students' epochs over it (default 2: stored views change between epochs)
#        STUDENT_SEEDS     seeds (default "0 1 2"); LRS the scratch learning rates (default "1e-3 3e-3 6e-3")
#        AUG               the students' --aug-cfg (default "scale=(0.25,1.0) color_jitter=0.4")
#        K                 stored views per sample (default 4)
#        TABLE_ONLY        a runs folder of this script: only print its table again (with the same settings)
set -euo pipefail
cd "$(dirname "$0")/.."
clipc=${CLIPC:-build/cli/clipc}
if [ -z "${CLIPC:-}" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j "$(nproc)" --target clipc
fi
out=${DISTILL_OUT:-demo}
source scripts/fmnist-data.sh
fmnist_data "$clipc" "$out"
runs=${TABLE_ONLY:-$out/distill/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$runs"
fmnist_config "$clipc" configs/models/clip-small.json "$runs/teacher-a.json"
fmnist_config "$clipc" configs/models/clip-tiny.json "$runs/teacher-b.json"
fmnist_config "$clipc" configs/models/clip-micro.json "$runs/student.json"
templates=configs/zeroshot/fashion-mnist-templates.txt
train_data=$out/fmnist-train
aug=${AUG:-scale=(0.25,1.0) color_jitter=0.4}
k=${K:-4}
seeds=${STUDENT_SEEDS:-0 1 2}
lrs=${LRS:-1e-3 3e-3 6e-3}
common=(--vocab "$vocab" --batch-size 256 --warmup 10 --lr-scheduler cosine --workers 2 --log-every-n-steps 20
        --zeroshot-frequency 0 --logs "$runs")

# subset_manifest SRC DST N: a manifest of the first N shards of manifest SRC, in SRC's folder.
subset_manifest() {
  awk -v n="$3" -v k=0 '
    /"shards"/ { in_shards = 1 }
    in_shards && /"path"/ { gsub(/[",\t ]/, ""); split($0, a, ":"); path = a[2] }
    in_shards && /"num_samples"/ && k < n { gsub(/[",\t ]/, ""); split($0, a, ":"); paths[k] = path; sizes[k++] = a[2]; total += a[2] }
    END {
      printf "{\"format\": \"clipc-manifest\", \"version\": 1, \"num_samples\": %d, \"shards\": [", total
      for (i = 0; i < k; i++) printf "%s{\"path\": \"%s\", \"num_samples\": %d}", i ? ", " : "", paths[i], sizes[i]
      print "]}"
    }' "$1" > "$2"
}

# timed NAME COMMAND...: runs COMMAND, its wall time in seconds into $runs/NAME.seconds.
timed() {
  local name=$1 t0
  shift
  t0=$(date +%s.%N)
  "$@" > "$runs/$name.log" 2>&1
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f\n", b - a }' > "$runs/$name.seconds"
}

# top1 WEIGHTS: zero-shot top-1 (%) on the test set.
top1() {
  $clipc eval --pretrained "$1" --vocab "$vocab" --zeroshot "$out/fmnist-test" --templates "$templates" |
    sed -n 's/.*top-1 *\([0-9.]*\)%.*/\1/p'
}

student_shards=${STUDENT_SHARDS:-1}
student_epochs=${STUDENT_EPOCHS:-2}
student_data=$train_data/students-$student_shards.json
subset_manifest "$train_data/manifest.json" "$student_data" "$student_shards"
student() {  # student NAME LR SEED [FLAGS...]: one epoch of the students' set
  local name=$1 lr=$2 seed=$3
  shift 3
  timed "$name" $clipc train --model "$runs/student.json" "${common[@]}" --train-data "$student_data" --epochs "$student_epochs" \
    --lr "$lr" --seed "$seed" --aug-cfg "$aug" --save-frequency "$student_epochs" --name "$name" "$@"
  top1 "$runs/$name/checkpoints/epoch_$student_epochs/model.safetensors" > "$runs/$name.top1"
}

echo "== students: clip-micro, seeds $seeds; scratch at $lrs"
[ -n "${TABLE_ONLY:-}" ] || for lr in $lrs; do for seed in $seeds; do student "scratch-$lr-$seed" "$lr" "$seed"; done; done
# stats NAME: "mean sd" of the seeds' top-1 of runs NAME-<seed>.
stats() {
  for seed in $seeds; do cat "$runs/$1-$seed.top1"; done |
    awk '{ x[NR] = $1; m += $1 } END { m /= NR; for (i = 1; i <= NR; i++) v += (x[i] - m) ^ 2; printf "%.2f %.2f", m, (NR > 1 ? sqrt(v / (NR - 1)) : 0) }'
}
best_lr=$(for lr in $lrs; do echo "$(stats "scratch-$lr" | cut -d' ' -f1) $lr"; done | sort -g | tail -n1 | cut -d' ' -f2)
echo "best scratch learning rate: $best_lr"
# teacher NAME CONFIG SAMPLES SEED: trains a teacher on SAMPLES images drawn from the 60k.
teacher() {
  timed "teacher-$1" $clipc train --model "$2" "${common[@]}" --lr 1e-3 --seed "$4" --train-data "$train_data" --epochs 1 \
    --train-num-samples "$3" --save-frequency 1 --name "teacher-$1"
  echo "$runs/teacher-$1/checkpoints/epoch_1/model.safetensors"
}
echo "== teachers"
teacher_a=${TEACHER_A:-$(teacher a "$runs/teacher-a.json" "${TEACHER_A_SAMPLES:-60000}" 0)}
until [ -f "$teacher_a" ]; do sleep 10; done  # a given teacher may still be training elsewhere
teacher_b=${TEACHER_B:-$(teacher b "$runs/teacher-b.json" "${TEACHER_B_SAMPLES:-30000}" 1)}
[ -n "${TEACHER_A_SECONDS:-}" ] && echo "$TEACHER_A_SECONDS" > "$runs/teacher-a.seconds"
[ -n "${TEACHER_B_SECONDS:-}" ] && echo "$TEACHER_B_SECONDS" > "$runs/teacher-b.seconds"
if [ "${SINGLE:-A}" = A ]; then single=$teacher_a single_cfg=$runs/teacher-a.json; else single=$teacher_b single_cfg=$runs/teacher-b.json; fi

if [ -z "${TABLE_ONLY:-}" ]; then
echo "== stored teacher targets of the students' set: evaluation crops, and $k views per sample (--aug-cfg $aug)"
timed cache-eval $clipc distill-cache --pretrained "$single" --model "$single_cfg" --vocab "$vocab" --data "$student_data" \
  --batch-size 256 --out "$runs/cache-eval"
timed cache-views $clipc distill-cache --pretrained "$teacher_a::$teacher_b" --model "$runs/teacher-a.json::$runs/teacher-b.json" \
  --vocab "$vocab" --data "$student_data" --batch-size 256 --out "$runs/cache-views-a::$runs/cache-views-b" \
  --augmentations "$k" --aug-cfg "$aug" --seed 0
fi
if [ "${SINGLE:-A}" = A ]; then single_views=$runs/cache-views-a; else single_views=$runs/cache-views-b; fi

[ -n "${TABLE_ONLY:-}" ] || for seed in $seeds; do
  student "online-$seed" "$best_lr" "$seed" --distill-model "$single_cfg" --distill-pretrained "$single"
  student "stored-eval-$seed" "$best_lr" "$seed" --distill-cache "$runs/cache-eval"
  student "stored-views-$seed" "$best_lr" "$seed" --distill-cache "$single_views"
  student "ensemble-$seed" "$best_lr" "$seed" --distill-cache "$runs/cache-views-a::$runs/cache-views-b"
done

# row LABEL NAME [EXTRA]: mean, spread, each seed, mean wall time.
row() {
  local s per="" t=0 n=0 seed
  s=$(stats "$2")
  for seed in $seeds; do per+="${per:+ / }$(cat "$runs/$2-$seed.top1")"; t=$((t + $(cat "$runs/$2-$seed.seconds"))); n=$((n + 1)); done
  echo "| $1 | ${s% *}% | ${s#* } | $per | $((t / n)) s${3:-} |"
}
n_students=$(grep -o '"num_samples": [0-9]*' "$student_data" | head -n1 | cut -d' ' -f2)
seconds() { cat "$runs/$1.seconds" 2>/dev/null || echo "?"; }
{
  echo "Teachers (zero-shot top-1 on the 10k test images; training wall time): A clip-small $(top1 "$teacher_a")%" \
    "($(seconds teacher-a) s), B clip-tiny $(top1 "$teacher_b")% ($(seconds teacher-b) s); single-teacher ways use ${SINGLE:-A}."
  echo "Students: clip-micro, $student_epochs epochs of $n_students images, --aug-cfg $aug; distilled at the best scratch lr ($best_lr)."
  echo
  echo "| student | mean top-1 | sd | seeds $seeds | wall time per run |"
  echo "|---|---|---|---|---|"
  for lr in $lrs; do row "scratch, lr $lr" "scratch-$lr"; done
  row "online teacher" online
  row "stored targets, evaluation crops" stored-eval " (+ $(seconds cache-eval) s once for the cache)"
  row "stored targets, $k views per sample" stored-views " (+ the views cache)"
  row "ensemble A + B, $k stored views" ensemble " (+ $(seconds cache-views) s once for both teachers' views caches)"
  echo
  echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (a shared 2-core machine)."
} | tee "$runs/results.md"
echo "runs: $runs"
