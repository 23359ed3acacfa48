// torch_file: the named tensors inside PyTorch's own files, read with libtorch: torch.save's zip
// format (PyTorch >= 1.6), holding a state dict or a dict with one under "state_dict" (OpenCLIP's
// epoch_N.pt), and TorchScript archives (torch.jit.save; OpenAI's CLIP release), whose parameters
// and buffers are its state dict. Tensors saved on a GPU are read onto the CPU. The legacy
// (non-zip) torch.save format is recognised and refused: only Python's torch.load reads it.
// libtorch's unpickler reads what C++'s torch::pickle_save writes, but not all that Python's
// torch.save does: it turns a collections.OrderedDict into None (Python's model.state_dict() is
// one: pytorch/pytorch#100741) and lacks APPEND and SETITEM (one-element lists and dicts: an
// optimizer's state). data.pkl goes through shim/pickle_rewrite.hpp first, which rewrites those
// into what libtorch reads, and refuses a pickle it cannot step through with one line.
#ifndef CLIPC_SHIM_TORCH_FILE_H
#define CLIPC_SHIM_TORCH_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "shim/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TORCH_FILE_OTHER,   // none of PyTorch's formats (a safetensors file, say)
    TORCH_FILE_ZIP,     // a zip archive: torch.save's format (or a damaged archive)
    TORCH_FILE_SCRIPT,  // a TorchScript archive (torch.jit.save: it holds constants.pkl)
    TORCH_FILE_LEGACY,  // torch.save's legacy pickle stream (PyTorch < 1.6)
} torch_file_kind;

typedef struct {
    const char *name;   // the key in the file ("module." prefixes kept)
    const char *dtype;  // its element type as safetensors names it: "F32", "F16", "BF16", "I64", ...
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    const void *data;   // C-order on the host; valid until torch_file_close
    size_t nbytes;
} torch_file_tensor;

typedef struct torch_file torch_file;

// What a file is, from its first bytes and, for a zip archive, its list of records. Returns 0
// (TORCH_FILE_OTHER for a file too short to tell), or -1 with the message when it cannot be read.
int torch_file_sniff(const char *path, torch_file_kind *kind);

// Reads every tensor of a torch.save zip file's state dict (the file's dict itself, or its
// "state_dict" entry) or of a TorchScript archive (parameters, then buffers, with their dotted
// names). NULL with "<path>: <problem>" for a truncated or damaged archive, or a file that holds
// no dict of tensors.
torch_file *torch_file_open(const char *path);
void torch_file_close(torch_file *f);
int torch_file_count(const torch_file *f);
const torch_file_tensor *torch_file_get(const torch_file *f, int i);
// Whether the file was a TorchScript archive.
bool torch_file_is_script(const torch_file *f);

// Test support: the files Python would write, made by libtorch here. Tensors are "F32".
typedef enum {
    TORCH_FILE_WRITE_STATE_DICT,  // torch.save(state_dict): open_clip_pytorch_model.bin
    TORCH_FILE_WRITE_CHECKPOINT,  // torch.save({"epoch", "name", "state_dict" with "module." keys}): epoch_N.pt
    TORCH_FILE_WRITE_SCRIPT,      // a TorchScript module whose parameters carry the dotted names
    TORCH_FILE_WRITE_LIST,        // torch.save([tensors]): a zip file that holds no state dict
} torch_file_layout;
// Writes n tensors in the layout. Returns 0, or -1 with the message.
int torch_file_write(const char *path, torch_file_layout layout, const torch_file_tensor *tensors, int n);
// Writes a torch.save zip archive whose data.pkl is the given pickle (what Python's pickle module
// would write, given as bytes). Returns 0, or -1 with the message.
int torch_file_write_pickle(const char *path, const void *pickle, size_t n);

#ifdef __cplusplus
}
#endif

#endif
