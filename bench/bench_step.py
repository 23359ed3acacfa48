#!/usr/bin/env python3
"""Times one CLIP training step in PyTorch from Python, for a side-by-side figure with bench_step.

The model is OpenCLIP's CLIP architecture written with torch.nn (OpenCLIP itself is not a Debian
package): ViT image tower and causal text tower with nn.MultiheadAttention, OpenCLIP's layout and
computation (the text tower runs on all context positions, as OpenCLIP does). Step = forward of
both towers, CLIP loss, backward. Inputs are synthetic, as in bench_step.c.

Run with Debian's python3-torch (same libtorch as clipc):
  /usr/bin/python3 bench/bench_step.py --model clip-tiny --batch-size 128
"""
import argparse
import json
import math
import os
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, width, heads, mlp_width, act):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_width), act(), nn.Linear(mlp_width, width))

    def forward(self, x, mask=None):  # x: (L, B, W), as OpenCLIP 2.20
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class CLIP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        v, t, e = cfg["vision_cfg"], cfg["text_cfg"], cfg["embed_dim"]
        act = QuickGELU if cfg.get("quick_gelu") else nn.GELU
        W, P, S = v["width"], v["patch_size"], v["image_size"]
        self.conv1 = nn.Conv2d(3, W, P, P, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(W) * W ** -0.5)
        self.vpos = nn.Parameter(torch.randn((S // P) ** 2 + 1, W) * W ** -0.5)
        self.ln_pre, self.ln_post = nn.LayerNorm(W), nn.LayerNorm(W)
        mlp = int(W * v.get("mlp_ratio", 4.0))
        self.vblocks = nn.ModuleList(Block(W, W // v.get("head_width", 64), mlp, act) for _ in range(v["layers"]))
        self.vproj = nn.Parameter(torch.randn(W, e) * W ** -0.5)
        Wt, C = t["width"], t["context_length"]
        self.token_embedding = nn.Embedding(t["vocab_size"], Wt)
        self.tpos = nn.Parameter(torch.randn(C, Wt) * 0.01)
        self.tblocks = nn.ModuleList(Block(Wt, t["heads"], 4 * Wt, act) for _ in range(t["layers"]))
        self.ln_final = nn.LayerNorm(Wt)
        self.text_projection = nn.Parameter(torch.randn(Wt, e) * Wt ** -0.5)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.register_buffer("attn_mask", torch.empty(C, C).fill_(float("-inf")).triu_(1), persistent=False)

    def encode_image(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.vpos
        x = self.ln_pre(x).permute(1, 0, 2)
        for b in self.vblocks:
            x = b(x)
        return self.ln_post(x[0]) @ self.vproj

    def encode_text(self, tokens):
        x = (self.token_embedding(tokens) + self.tpos).permute(1, 0, 2)
        for b in self.tblocks:
            x = b(x, self.attn_mask)
        x = self.ln_final(x.permute(1, 0, 2))
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


def step(model, images, tokens):
    img = F.normalize(model.encode_image(images), dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.t()
    labels = torch.arange(images.shape[0], device=images.device)
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    loss.backward()
    model.zero_grad(set_to_none=True)
    loss.item()  # waits for the GPU


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="clip-tiny")
    p.add_argument("--configs", default=os.path.join(os.path.dirname(__file__), "..", "configs", "models"))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads or os.cpu_count())
    cfg = json.load(open(os.path.join(a.configs, a.model + ".json")))
    torch.manual_seed(0)
    model = CLIP(cfg)
    B, S, C, V = a.batch_size, cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"], cfg["text_cfg"]["vocab_size"]
    images = torch.randn(B, 3, S, S)
    random.seed(7)
    tokens = torch.zeros(B, C, dtype=torch.long)
    for b in range(B):
        n = min(8 + random.randrange(13), C)
        tokens[b, 0], tokens[b, n - 1] = V - 2, V - 1
        tokens[b, 1:n - 1] = torch.randint(1, V - 2, (n - 2,))
    model, images, tokens = model.to(a.device), images.to(a.device), tokens.to(a.device)
    for _ in range(a.warmup):
        step(model, images, tokens)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step(model, images, tokens)
    dt = (time.perf_counter() - t0) / a.steps
    print(f"pytorch {a.model:10s} batch {B:4d}: {dt * 1e3:8.1f} ms/step {B / dt:8.1f} samples/s "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
