# Fashion-MNIST data for the demo and the distillation experiment; sourced, not run.
#   fmnist_data CLIPC OUT     shards OUT/fmnist-train (60k captioned images) and OUT/fmnist-test (10k
#                             labelled), and a vocabulary in $vocab: CLIP's merges file when
#                             CLIPC_VOCAB names one, else OUT/fmnist-bpe.txt.gz trained on the captions.
#                             Re-running finishes only what is missing.
#   fmnist_config CLIPC SRC DST   model config SRC with vocab_size set to $vocab's size (after fmnist_data)

fmnist_data() {
  local clipc=$1 out=$2 fmnist=/usr/share/datasets/fashion-mnist
  mkdir -p "$out"
  $clipc shards --fashion-mnist "$fmnist" --split train --out "$out/fmnist-train"
  $clipc shards --fashion-mnist "$fmnist" --split test --out "$out/fmnist-test"
  vocab=${CLIPC_VOCAB:-}
  if [ -z "$vocab" ] || [ ! -f "$vocab" ]; then
    vocab=$out/fmnist-bpe.txt.gz
    if [ ! -f "$vocab" ]; then
      # The captions are the five templates filled with the ten class names ('#' lines are comments).
      grep -v '^#' configs/zeroshot/fashion-mnist-classnames.txt | while read -r class; do
        grep -v '^#' configs/zeroshot/fashion-mnist-templates.txt | while read -r template; do echo "${template//\{\}/$class}"; done
      done > "$out/captions.txt"
      $clipc tokenizer train "$out/captions.txt" --merges 256 --output "$vocab"
    fi
  fi
}

fmnist_config() {
  local vocab_size
  vocab_size=$($1 tokenizer info --vocab "$vocab" | sed -n 's/^vocab_size *//p')
  sed "s/\"vocab_size\": *[0-9]*/\"vocab_size\": $vocab_size/" "$2" > "$3"
}
