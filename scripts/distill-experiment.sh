#!/usr/bin/env bash
# The distillation experiment (docs/distillation.md) on Fashion-MNIST, on the CPU: a clip-small
# teacher (larger than clip-tiny) trained for several epochs on the 60k training images, then a
# clip-micro student (smaller than clip-tiny) trained for one fixed budget, one epoch of the first
# STUDENT_SHARDS training shards, three ways: from scratch, distilled online, and distilled from
# stored teacher targets (`clipc distill-cache`, written beside those shards), once per seed: runs of
# one seed share initial weights, data order and schedule. Prints the table of zero-shot top-1
# on the 10k test images and the wall time of each run, and writes it to RUNS/results.md.
#
# Usage: bash scripts/distill-experiment.sh      (from the project root; shares demo/ with demo.sh)
# Env:   CLIPC_VOCAB       CLIP's bpe_simple_vocab_16e6.txt.gz, if you have it (else a trained BPE)
#        DISTILL_OUT       data folder (default demo); runs go to DISTILL_OUT/distill/<date>/
#        TEACHER_EPOCHS    teacher epochs (default 3)
#        TEACHER_SAMPLES   teacher samples per epoch (default 20000, a new random subset each epoch)
#        STUDENT_SHARDS    the students' set: the first N shards of 10k training images (default 2)
#        STUDENT_SEEDS     the seeds of the student runs (default "0 1 2"): each way once per seed
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target clipc
clipc=build/cli/clipc
out=${DISTILL_OUT:-demo}
teacher_epochs=${TEACHER_EPOCHS:-3}
source scripts/fmnist-data.sh
fmnist_data "$clipc" "$out"
runs=$out/distill/$(date +%Y%m%d-%H%M%S)
mkdir -p "$runs"
fmnist_config "$clipc" configs/models/clip-small.json "$runs/teacher.json"
fmnist_config "$clipc" configs/models/clip-micro.json "$runs/student.json"
templates=configs/zeroshot/fashion-mnist-templates.txt
train_data=$out/fmnist-train
common=(--vocab "$vocab" --batch-size 256 --lr 1e-3 --warmup 20 --lr-scheduler cosine
        --workers 2 --seed 0 --log-every-n-steps 20 --zeroshot-frequency 0 --logs "$runs")

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
  "$@"
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f\n", b - a }' > "$runs/$name.seconds"
}

# top1 WEIGHTS: zero-shot top-1 (%) on the test set.
top1() {
  $clipc eval --pretrained "$1" --vocab "$vocab" --zeroshot "$out/fmnist-test" --templates "$templates" |
    sed -n 's/.*top-1 *\([0-9.]*\)%.*/\1/p'
}

student_shards=${STUDENT_SHARDS:-2}
student_data=$train_data/students-$student_shards.json
subset_manifest "$train_data/manifest.json" "$student_data" "$student_shards"
student() {  # student NAME [FLAGS...]: one epoch of the students' set
  local name=$1
  shift
  timed "$name" $clipc train --model "$runs/student.json" "${common[@]}" --train-data "$student_data" --epochs 1 \
    --name "$name" "$@"
}

echo "== teacher: clip-small, $teacher_epochs epochs"
timed teacher $clipc train --model "$runs/teacher.json" "${common[@]}" --train-data "$train_data" --epochs "$teacher_epochs" \
  --train-num-samples "${TEACHER_SAMPLES:-20000}" --save-frequency "$teacher_epochs" --name teacher
teacher=$runs/teacher/checkpoints/epoch_$teacher_epochs.safetensors

echo "== stored teacher targets of the students' set (beside its shards)"
timed cache $clipc distill-cache --pretrained "$teacher" --vocab "$vocab" --data "$student_data" --batch-size 256

seeds=${STUDENT_SEEDS:-0 1 2}
echo "== students: clip-micro, seeds $seeds"
for seed in $seeds; do
  student scratch-$seed --seed "$seed"
  student online-$seed --seed "$seed" --distill-model "$runs/teacher.json" --distill-pretrained "$teacher" \
    --distill-cache "$train_data"
  student stored-$seed --seed "$seed" --distill-cache "$train_data"
done

# row KIND: the top-1 of each seed's student, their mean, and the mean wall time.
row() {
  local accs="" times="" seed
  for seed in $seeds; do
    accs+="$(top1 "$runs/$1-$seed/checkpoints/epoch_1.safetensors") "
    times+="$(cat "$runs/$1-$seed.seconds") "
  done
  awk -v a="$accs" -v t="$times" 'BEGIN { n = split(a, x, " "); split(t, w, " "); m = 0; s = 0
    for (i = 1; i <= n; i++) { m += x[i]; s += w[i]; printf "%s%s%%", (i > 1 ? " / " : ""), x[i] }
    printf " | %.2f%% | %.0f s", m / n, s / n }'
}

cosine=$(cat "$runs"/online-*/metrics.jsonl | grep -o '"teacher_crop_cosine":[0-9.e-]*' | cut -d: -f2 |
  awk '{ s += $1; n++ } END { printf "%.4f", s / n }')
n_students=$(grep -o '"num_samples": [0-9]*' "$student_data" | head -n1 | cut -d' ' -f2)
{
  echo "| model | zero-shot top-1 (seeds $seeds) | mean | training wall time |"
  echo "|---|---|---|---|"
  echo "| teacher: clip-small, $teacher_epochs epochs of ${TEACHER_SAMPLES:-20000} | $(top1 "$teacher")% | | $(cat "$runs/teacher.seconds") s |"
  echo "| student: clip-micro, one epoch of $n_students, from scratch | $(row scratch) |"
  echo "| student: distilled online | $(row online) |"
  echo "| student: distilled from stored targets | $(row stored) (+ $(cat "$runs/cache.seconds") s once for the cache) |"
  echo
  echo "Mean cosine between the teacher's image features of the training crops and the stored ones"
  echo "(evaluation crops), over the online runs: $cosine. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$runs/results.md"
echo "runs: $runs"
