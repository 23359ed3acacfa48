"""A CSV of Fashion-MNIST images with web-like captions, read alike by `clipc shards --csv` and
OpenCLIP's CsvDataset: tab separated, a header row, columns filepath (absolute PNG path) and title.

Images: the first N training images of Fashion-MNIST's IDX files, as 28x28 RGB PNGs (gray
replicated) in OUT_DIR/images/NNNNN.png (kept; only missing ones are written).
Captions (seeded: the same file for the same N and SEED), a caption's words being its
whitespace-separated pieces:
  - exactly ceil(5% of N) rows, drawn at random, have 80 words: at least 80 BPE tokens, so that
    after tokenization they fill the 77-token context (cut, EOT last);
  - every other row has a word count drawn uniformly from 3 to 25;
  - a caption is its image's class name (1 or 2 words) then random words up to its count, drawn
    with their frequencies from bench/web_captions.txt (40 web-like captions).
Writes OUT_DIR/web-N-sSEED.csv and prints its path.

Usage: web_csv.py FMNIST_DIR OUT_DIR N [SEED=0]"""
import gzip
import math
import os
import random
import struct
import sys

from PIL import Image

CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
FULL_PERCENT, FULL_WORDS, MIN_WORDS, MAX_WORDS = 5, 80, 3, 25


def read_idx(path):
    """The dimensions and bytes of an IDX file (gzip)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[2] != 8:
        sys.exit(f"web_csv: {path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def write_images(fmnist, out, n):
    (count, h, w), pixels = read_idx(os.path.join(fmnist, "train-images-idx3-ubyte.gz"))
    _, labels = read_idx(os.path.join(fmnist, "train-labels-idx1-ubyte.gz"))
    if n > count:
        sys.exit(f"web_csv: N={n}: Fashion-MNIST has {count} training images")
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    paths = []
    for i in range(n):
        path = os.path.join(out, "images", f"{i:05d}.png")
        if not os.path.exists(path):
            Image.frombytes("L", (w, h), pixels[i * h * w:(i + 1) * h * w]).convert("RGB").save(path)
        paths.append(path)
    return paths, labels[:n]


def captions(labels, seed):
    words = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_captions.txt")).read().split()
    rng = random.Random(seed)
    counts = [rng.randint(MIN_WORDS, MAX_WORDS) for _ in labels]
    for row in rng.sample(range(len(labels)), math.ceil(len(labels) * FULL_PERCENT / 100)):
        counts[row] = FULL_WORDS
    out = []
    for label, count in zip(labels, counts):
        name = CLASSES[label].split()
        out.append(" ".join(name + rng.choices(words, k=count - len(name))))
    return out


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    fmnist, out, n = sys.argv[1], os.path.abspath(sys.argv[2]), int(sys.argv[3])
    seed = int(sys.argv[4]) if len(sys.argv) == 5 else 0
    paths, labels = write_images(fmnist, out, n)
    csv = os.path.join(out, f"web-{n}-s{seed}.csv")
    with open(csv + ".tmp", "w") as f:
        f.write("filepath\ttitle\n")
        for path, caption in zip(paths, captions(labels, seed)):
            f.write(f"{path}\t{caption}\n")
    os.replace(csv + ".tmp", csv)
    print(csv)


if __name__ == "__main__":
    main()
