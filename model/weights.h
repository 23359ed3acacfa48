// weights: a weights file in any format clipc reads, opened as one st_file (model/safetensors.h):
// safetensors as is; PyTorch's torch.save zip files (a state dict such as OpenCLIP's
// open_clip_pytorch_model.bin, or a dict holding one under "state_dict" such as OpenCLIP's
// epoch_N.pt) and TorchScript archives (OpenAI's ViT-B-32.pt) read through libtorch
// (shim/torch_file.h). Keys lose DDP's "module." prefix, and OpenAI's archives lose the three
// entries that are not weights (input_resolution, context_length, vocab_size), as OpenCLIP's
// load_openai_model drops them. PyTorch's legacy (non-zip) format is refused with the reason.
#ifndef CLIPC_MODEL_WEIGHTS_H
#define CLIPC_MODEL_WEIGHTS_H

#include "model/safetensors.h"

// Opens path whatever its format. NULL with err_msg() "<path>: <problem>".
st_file *weights_open(const char *path);

#endif
