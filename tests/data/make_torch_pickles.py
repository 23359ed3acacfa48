# Writes the two files of tests/test_pretrained.c's Python cases with Python's torch.save (run
# once with Debian's /usr/bin/python3 and torch 1.13; the files are committed, CI runs no Python):
# - torch_state_dict.bin: torch.save(model.state_dict()) of a tiny model, a collections.OrderedDict
#   with its _metadata (as open_clip_pytorch_model.bin);
# - torch_epoch_1.pt: a dict as OpenCLIP's training main.py saves it, "state_dict" of the model
#   wrapped as DDP's ("module." keys, an OrderedDict with _metadata) and "optimizer" the state of
#   torch.optim.AdamW after one step (its one-parameter group is pickled with APPEND).
# Every weight is exact in float32: value i of the state dict's tensors in order is 0.25 * i - 3.
import os

import torch
from torch import nn


class Wrapped(nn.Module):  # what DDP's state dict looks like: every key under "module."
    def __init__(self, module):
        super().__init__()
        self.module = module


model = nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2))
i = 0
with torch.no_grad():
    for p in model.state_dict().values():
        p.copy_(torch.arange(i, i + p.numel(), dtype=torch.float32).reshape(p.shape) * 0.25 - 3)
        i += p.numel()
out = os.path.dirname(os.path.abspath(__file__))
torch.save(model.state_dict(), os.path.join(out, "torch_state_dict.bin"))

wrapped = Wrapped(model)
opt = torch.optim.AdamW([model[0].weight, model[0].bias, model[1].weight])
opt.add_param_group({"params": [model[1].bias]})  # a group of one parameter: APPEND
opt.zero_grad()
model(torch.ones(1, 3)).sum().backward()
saved = {k: v.clone() for k, v in wrapped.state_dict().items()}
opt.step()
with torch.no_grad():  # the weights as before the step, so both files hold the same values
    for k, v in wrapped.state_dict().items():
        v.copy_(saved[k])
torch.save({"epoch": 1, "name": "clipc-test", "state_dict": wrapped.state_dict(), "optimizer": opt.state_dict()},
           os.path.join(out, "torch_epoch_1.pt"))
