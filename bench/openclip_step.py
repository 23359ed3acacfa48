"""OpenCLIP v2.20.0's training step on the captions bench_step used: the loop of
../shared/peers/openclip/bench/bench_loop.py (zero_grad, forward, ClipLoss, backward, AdamW step,
logit-scale clamp; fp32, no clipping; AdamW lr 1e-3, betas (0.9, 0.98), eps 1e-6, weight decay 0.2
except on gains, biases and the logit scale, as training/main.py sets it), but with the token ids
read from the file `bench_step --dump-tokens FILE` wrote (int64 little-endian, batch x context;
the batch size is the file's). Images are random (their values do not change the cost).

OpenCLIP's cost does not depend on the captions' lengths: its text tower always runs the whole
context (77 positions) and pools the row at the argmax id (the EOT). The captions are given anyway,
so that both sides run the same batch; the mean and longest caption (SOT and EOT included) are
printed, which also shows that the file arrived.

Usage: openclip_step.py MODEL TOKENS_FILE STEPS WARMUP
Env:   OC_EXTRA_CONFIGS (folder with clip-tiny.json), TORCH_THREADS (default 2); PYTHONPATH with
       OpenCLIP's src/ and the peers' stubs (bench/side_by_side.sh sets them).
Prints per-step times and a line "RESULT ... median_step_s=S ..." (as bench_loop.py)."""
import math
import os
import statistics
import sys
import time

import torch

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
import open_clip  # noqa: E402

if os.environ.get("OC_EXTRA_CONFIGS"):
    open_clip.add_model_config(os.environ["OC_EXTRA_CONFIGS"])


def read_tokens(path, ctx, vocab):
    """The batch x ctx ids of PATH, checked: SOT first, one EOT (the largest id) a row."""
    raw = open(path, "rb").read()
    if not raw or len(raw) % (8 * ctx):
        sys.exit(f"openclip_step: {path}: {len(raw)} bytes is not a whole number of {ctx}-token int64 rows")
    tokens = torch.frombuffer(bytearray(raw), dtype=torch.int64).reshape(-1, ctx)
    if sys.byteorder != "little":
        tokens = tokens.byteswap()
    bad = (tokens[:, 0] != vocab - 2) | ((tokens == vocab - 1).sum(1) != 1) | (tokens.min(1).values < 0)
    if bad.any():
        sys.exit(f"openclip_step: {path}: row {int(bad.nonzero()[0])} is not SOT, ids, one EOT "
                 f"({vocab - 1}), zeros")
    return tokens


def adamw(model):
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    named = list(model.named_parameters())
    return torch.optim.AdamW(
        [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
         {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.2}],
        lr=1e-3, betas=(0.9, 0.98), eps=1e-6)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    model_name, path, steps, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    model = open_clip.create_model(model_name, precision="fp32", device="cpu", output_dict=True)
    model.train()
    cfg = open_clip.get_model_config(model_name)
    img, text = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]
    texts = read_tokens(path, text.get("context_length", 77), text.get("vocab_size", 49408))
    batch = texts.shape[0]
    lengths = texts.argmax(1) + 1
    print(f"model={model_name} batch={batch} image={img} ctx={texts.shape[1]} threads={torch.get_num_threads()} "
          f"steps={steps} warmup={warmup}", flush=True)
    print(f"captions from {path}: mean {lengths.double().mean():.1f} tokens, longest {int(lengths.max())} "
          f"(SOT and EOT included; OpenCLIP runs all {texts.shape[1]} positions regardless)", flush=True)
    images = torch.randn(batch, 3, img, img, generator=torch.Generator().manual_seed(0))
    opt, loss_fn, times = adamw(model), open_clip.ClipLoss(), []
    for i in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        out = model(images, texts)
        loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        times.append(time.perf_counter() - t0)
        print(f"  step {i + 1:3d} total={times[-1]:.3f}s loss={loss.item():.4f}", flush=True)
    med = statistics.median(times[warmup:])
    print(f"RESULT model={model_name} batch={batch} median_step_s={med:.3f} min={min(times[warmup:]):.3f} "
          f"max={max(times[warmup:]):.3f} n={steps - warmup} samples_per_s(median)={batch / med:.2f}")


if __name__ == "__main__":
    main()
