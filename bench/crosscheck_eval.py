#!/usr/bin/env python3
"""Evaluates the same weights on the same images with clipc and with OpenCLIP's own code, and
reports both zero-shot top-1 figures and the largest per-image feature difference.

The images are Fashion-MNIST's 10k test images. clipc reads them from shards stored losslessly at
full size (`clipc shards --fashion-mnist ... --lossless --max-size 0`); OpenCLIP reads the same
pixels from PNG files (28x28 RGB, grey replicated, as the OpenCLIP peer's prep_fmnist.py writes
them) through the model's own preprocess_val (PIL bicubic Resize, CenterCrop, ToTensor, Normalize).
Both sides use the same class names and templates (configs/zeroshot/fashion-mnist-*.txt) and build
the classifier the same way (mean of normalized text embeddings per class, normalized again).
clipc's side is the clipc binary (`clipc eval`, `clipc embed`); OpenCLIP's side is OpenCLIP's
source tree (v2.20.0 from the peer tarball) on Debian's python3-torch, python3-torchvision and
python3-pil (ftfy, not packaged by Debian, is replaced by identity: the prompts are plain ASCII).

Targets (issue 14): top-1 within 0.1 point, features within 1e-4. The exit status is 1 when a
target is missed.

Usage (from the project root, after `bash scripts/demo.sh` with CLIPC_VOCAB set to CLIP's merges
file, or any clipc checkpoint trained with CLIP's vocabulary):
  tar -xzf ../shared/peers/openclip/open_clip-v2.20.0-src.tar.gz -C /tmp
  OMP_WAIT_POLICY=passive /usr/bin/python3 bench/crosscheck_eval.py --clipc build/cli/clipc \\
      --openclip-src /tmp/open_clip-v2.20.0/src --pretrained demo/logs/RUN/checkpoints/epoch_1/model.safetensors \\
      --vocab ../shared/clip/bpe_simple_vocab_16e6.txt.gz --work /tmp/crosscheck
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import types

import numpy as np
import torch
from PIL import Image

ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
             "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file, without the safetensors package."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        buf = bytearray(data[begin:end])
        tensors[name] = torch.frombuffer(buf, dtype=ST_DTYPES[t["dtype"]]).reshape(t["shape"]).clone()
    return tensors, meta


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def lines(path):
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def run(cmd):
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def prepare_data(args):
    """Lossless full-size shards for clipc, PNG files of the same pixels for OpenCLIP."""
    shards = os.path.join(args.work, "fm-test")
    run([args.clipc, "shards", "--fashion-mnist", args.fashion_mnist, "--split", "test", "--lossless",
         "--max-size", "0", "--out", shards])
    images = read_idx(os.path.join(args.fashion_mnist, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.fashion_mnist, "t10k-labels-idx1-ubyte.gz"))
    png_dir = os.path.join(args.work, "png")
    os.makedirs(png_dir, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        p = os.path.join(png_dir, f"{i:05d}.png")
        if not os.path.exists(p):
            Image.fromarray(img, mode="L").convert("RGB").save(p)
        paths.append(p)
    return shards, paths, labels.astype(np.int64)


def clipc_side(args, shards, classnames, templates):
    """clipc's top-1 (clipc eval) and its image features by key (clipc embed)."""
    common = ["--pretrained", args.pretrained, "--vocab", args.vocab, "--threads", str(args.threads)]
    if args.model:
        common += ["--model", args.model]
    out = os.path.join(args.work, "clipc-eval.json")
    run([args.clipc, "eval", *common, "--zeroshot", shards, "--classnames", classnames, "--templates", templates,
         "--output", out])
    with open(out) as f:
        top1 = json.load(f)["zeroshot"][0]["top1"]
    emb = os.path.join(args.work, "clipc-embed.safetensors")
    run([args.clipc, "embed", *common, "--images", shards, "--output", emb])
    tensors, meta = read_safetensors(emb)
    keys = json.loads(meta["image_keys"])
    index = [int(k.rsplit("/", 1)[1]) for k in keys]  # "fashion-mnist/test/00042" -> 42
    features = torch.zeros_like(tensors["image_embeddings"])
    features[index] = tensors["image_embeddings"]
    return top1, features


def model_config(args, meta):
    """The OpenCLIP model config and preprocess_cfg of the weights (--model, else clipc.config)."""
    if args.model:
        with open(args.model) as f:
            cfg = json.load(f)
    else:
        cfg = json.loads(meta["clipc.config"])
    if "model_cfg" in cfg:  # the hub layout: open_clip_config.json
        return cfg["model_cfg"], cfg.get("preprocess_cfg") or {}
    return cfg, {}


def openclip_side(args, paths, labels, classnames, templates):
    """OpenCLIP's top-1 and image features, with its own model, transform and tokenizer."""
    try:
        import ftfy  # noqa: F401
    except ImportError:
        sys.modules["ftfy"] = types.SimpleNamespace(fix_text=lambda text, *a, **k: text)
    sys.path.insert(0, args.openclip_src)
    import open_clip

    state, meta = read_safetensors(args.pretrained)
    cfg, pre = model_config(args, meta)
    cfg_dir = os.path.join(args.work, "openclip-configs")
    os.makedirs(cfg_dir, exist_ok=True)
    with open(os.path.join(cfg_dir, "crosscheck-model.json"), "w") as f:
        json.dump(cfg, f)
    open_clip.add_model_config(cfg_dir)
    model, _, preprocess = open_clip.create_model_and_transforms(
        "crosscheck-model", precision="fp32", device="cpu", image_mean=pre.get("mean"), image_std=pre.get("std"))
    print(f"OpenCLIP evaluation transform: {preprocess}", flush=True)
    model.load_state_dict(state)
    model.eval()
    bundled = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    with gzip.open(bundled, "rb") as a, gzip.open(args.vocab, "rb") as b:
        if a.read() != b.read():
            sys.exit(f"{args.vocab}: not OpenCLIP's vocabulary; the weights must use CLIP's BPE merges")
    tokenizer = open_clip.get_tokenizer("crosscheck-model")
    with torch.no_grad():
        classifier = open_clip.build_zero_shot_classifier(
            model, tokenizer=tokenizer, classnames=lines(classnames), templates=lines(templates),
            num_classes_per_batch=10, device="cpu")
        features = []
        for s in range(0, len(paths), args.batch_size):
            batch = torch.stack([preprocess(Image.open(p)) for p in paths[s:s + args.batch_size]])
            features.append(model.encode_image(batch, normalize=True))
        features = torch.cat(features)
    predictions = (features @ classifier).argmax(dim=1).numpy()
    return float((predictions == labels).mean()), features


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clipc", default="build/cli/clipc")
    ap.add_argument("--openclip-src", required=True, help="OpenCLIP's src/ folder (from the peer tarball)")
    ap.add_argument("--pretrained", required=True, help="clipc checkpoint or OpenCLIP state dict (safetensors)")
    ap.add_argument("--model", help="model config JSON (default: the checkpoint's clipc.config)")
    ap.add_argument("--vocab", required=True, help="CLIP's bpe_simple_vocab_16e6.txt.gz")
    ap.add_argument("--fashion-mnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--classnames", default="configs/zeroshot/fashion-mnist-classnames.txt")
    ap.add_argument("--templates", default="configs/zeroshot/fashion-mnist-templates.txt")
    ap.add_argument("--work", default="/tmp/clipc-crosscheck")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    print(f"torch {torch.__version__}, PIL {Image.__version__}, threads {args.threads}", flush=True)

    shards, paths, labels = prepare_data(args)
    clipc_top1, clipc_features = clipc_side(args, shards, args.classnames, args.templates)
    oc_top1, oc_features = openclip_side(args, paths, labels, args.classnames, args.templates)

    diff = (clipc_features - oc_features).abs()
    worst = diff.max().item()
    worst_image = int(diff.max(dim=1).values.argmax())
    gap = abs(clipc_top1 - oc_top1) * 100
    print(f"images: {len(paths)}, features: {clipc_features.shape[1]} per image")
    print(f"clipc    zero-shot top-1: {100 * clipc_top1:.2f}%")
    print(f"OpenCLIP zero-shot top-1: {100 * oc_top1:.2f}%")
    print(f"top-1 difference: {gap:.2f} point (target <= 0.1)")
    print(f"max |feature difference|: {worst:.2e} (image {worst_image}; target <= 1e-4)")
    ok = gap <= 0.1 + 1e-9 and worst <= 1e-4
    print("RESULT " + ("pass" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
