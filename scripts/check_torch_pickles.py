# Cross-check of --pretrained with Python's torch.save files (outside CI; docs/model.md): an OpenCLIP
# clip-tiny model saved as open_clip_pytorch_model.bin (torch.save(model.state_dict())) and as
# epoch_1.pt the way OpenCLIP's training main.py saves it (the DDP-wrapped model: "module." keys,
# AdamW's state after one step); `clipc embed` of both files against OpenCLIP's own normalized text
# embeddings. Run from the repository root with OpenCLIP's environment:
#   source bench/lib.sh && openclip_env && \
#     CLIPC_VOCAB=../shared/clip/bpe_simple_vocab_16e6.txt.gz $PYTHON scripts/check_torch_pickles.py OUT_DIR build/cli/clipc
import json, os, struct, subprocess, sys
import numpy as np, torch, torch.nn.functional as F
import open_clip
out, clipc = sys.argv[1], sys.argv[2]
open_clip.add_model_config(os.environ["OC_EXTRA_CONFIGS"])
torch.manual_seed(0)
model = open_clip.create_model("clip-tiny")
tok = open_clip.get_tokenizer("clip-tiny")
os.environ.setdefault("MASTER_ADDR", "127.0.0.1"); os.environ.setdefault("MASTER_PORT", "29533")
torch.distributed.init_process_group("gloo", rank=0, world_size=1)
ddp = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
img = torch.randn(2, 3, 32, 32)
texts = ["a photo of a cat", "a diagram", "x"]
i, t, s = ddp(img, tok(texts))
(i.sum() + t.sum()).backward(); opt.step()
torch.save(model.state_dict(), f"{out}/open_clip_pytorch_model.bin")
torch.save({"epoch": 1, "name": "x", "state_dict": ddp.state_dict(), "optimizer": opt.state_dict()}, f"{out}/epoch_1.pt")
model.eval()
with torch.no_grad():
    want = F.normalize(model.encode_text(tok(texts)), dim=-1).numpy()
open(f"{out}/texts.txt", "w").write("\n".join(texts) + "\n")
def read_st(path, key):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); e = h[key]
    a, z = e["data_offsets"]; return np.frombuffer(b[8 + n + a:8 + n + z], np.float32).reshape(e["shape"])
got_all = []
for f in ["open_clip_pytorch_model.bin", "epoch_1.pt"]:
    cmd = [clipc, "embed", "--model", "clip-tiny", "--pretrained", f"{out}/{f}", "--texts", f"{out}/texts.txt",
           "--output", f"{out}/{f}.safetensors", "--device", "cpu", "--threads", "2"]
    print(" ".join(cmd)); subprocess.run(cmd, check=True)
    got = read_st(f"{out}/{f}.safetensors", "text_embeddings")
    print(f, "max |clipc - OpenCLIP| =", float(np.abs(got - want).max()), "shape", got.shape)
    got_all.append(got)
print("the two files' embeddings byte-identical:", got_all[0].tobytes() == got_all[1].tobytes())
