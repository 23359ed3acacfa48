# Sourced by the training scripts of tests/: prepares a micro training setup in $work (Fashion-MNIST
# test split in shards of 250, a small BPE vocabulary, a two-layer model) so that a step takes well
# under 0.1 s on two cores; micro_args holds the common `clipc train` flags (4 steps an epoch of 128
# samples; the caller adds the rest).
# Needs: clipc, fmnist (the Fashion-MNIST folder), work (an empty folder).
micro_args=(train --model clip-micro --model-configs "$work/configs" --vocab "$work/vocab.txt.gz"
  --train-data "$work/data" --batch-size 32 --train-num-samples 128 --warmup 2 --lr 1e-3 --workers 2 --seed 3
  --log-every-n-steps 1)

micro_setup() {
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  mkdir -p "$work/configs"
  "$clipc" shards --fashion-mnist "$fmnist" --split test --shard-size 250 --out "$work/data" > "$work/shards.log" 2>&1 ||
    { cat "$work/shards.log"; return 1; }
  local shards='{"path":"shard-00000.h5","num_samples":250},{"path":"shard-00001.h5","num_samples":250}'
  echo "{\"format\":\"clipc-manifest\",\"version\":1,\"num_samples\":500,\"shards\":[$shards]}" > "$work/data/val.json"
  cat "$here"/../configs/zeroshot/fashion-mnist-*.txt > "$work/corpus.txt"
  "$clipc" tokenizer train "$work/corpus.txt" --merges 200 --output "$work/vocab.txt.gz" > /dev/null
  local vocab_size  # EOT, the last id, + 1
  vocab_size=$(("$clipc" tokenize --vocab "$work/vocab.txt.gz" <<< "" || true) | awk '{ print $NF + 1 }')
  cat > "$work/configs/clip-micro.json" << JSON
{"embed_dim": 64, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
 "text_cfg": {"context_length": 32, "vocab_size": $vocab_size, "width": 64, "heads": 2, "layers": 2}}
JSON
}
