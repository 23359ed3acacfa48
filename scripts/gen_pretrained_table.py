#!/usr/bin/env python3
"""Writes configs/pretrained.json: OpenCLIP's table of pretrained tags, so that
`clipc ... --model ViT-B-32 --pretrained laion2b_s34b_b79k` finds the weights OpenCLIP downloaded.

The source is OpenCLIP v2.20.0's src/open_clip/pretrained.py (_PRETRAINED: per model, tag ->
url / hf_hub / mean / std), imported as is from the release tarball. v2.20.0 has no per-tag
quick_gelu: its factory.py sends the tag "openai" to load_openai_model, which builds every OpenAI
model with QuickGELU (build_model_from_openai_state_dict(quick_gelu=True)); the table says so
with "quick_gelu": true on those tags. The output is committed, so building clipc needs no
Python; rerun this only to follow another OpenCLIP release:
  /usr/bin/python3 scripts/gen_pretrained_table.py \
      ../shared/peers/openclip/open_clip-v2.20.0-src.tar.gz configs/pretrained.json
"""
import importlib
import json
import os
import sys
import tarfile
import tempfile
import types


def load_pretrained_module(tarball, workdir):
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(("open_clip/pretrained.py", "open_clip/version.py"))]
        tar.extractall(workdir, members=members)
    src = os.path.dirname(os.path.join(workdir, members[0].name))
    package = types.ModuleType("open_clip")  # without running open_clip/__init__.py (and its imports)
    package.__path__ = [src]
    sys.modules["open_clip"] = package
    version = importlib.import_module("open_clip.version").__version__
    return importlib.import_module("open_clip.pretrained"), version


def tag_entry(tag, cfg):
    entry = {"url": cfg.get("url", ""), "hf_hub": cfg.get("hf_hub", ""), "quick_gelu": tag == "openai"}
    if cfg.get("mean"):
        entry["mean"] = list(cfg["mean"])
    if cfg.get("std"):
        entry["std"] = list(cfg["std"])
    return entry


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen_pretrained_table.py OPEN_CLIP_SRC_TARBALL OUT.json")
    with tempfile.TemporaryDirectory() as workdir:
        pretrained, version = load_pretrained_module(sys.argv[1], workdir)
    table = {
        "source": "OpenCLIP v%s src/open_clip/pretrained.py (_PRETRAINED), by scripts/gen_pretrained_table.py; "
                  "quick_gelu: the tag 'openai' (load_openai_model builds QuickGELU models)" % version,
        "models": {model: {tag: tag_entry(tag, cfg) for tag, cfg in tags.items()}
                   for model, tags in pretrained._PRETRAINED.items()},
    }
    with open(sys.argv[2], "w") as out:
        json.dump(table, out, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main()
