#include "model/weights.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "shim/torch_file.h"

static void release_torch_file(void *f) { torch_file_close(f); }

static bool openai_extra(const char *name) {
    return strcmp(name, "input_resolution") == 0 || strcmp(name, "context_length") == 0 || strcmp(name, "vocab_size") == 0;
}

// The tensors of a PyTorch file as an st_file over libtorch's memory (no copy).
static st_file *open_torch(const char *path) {
    torch_file *tf = torch_file_open(path);
    if (!tf) return NULL;
    int n = torch_file_count(tf), kept = 0, rc = 0;
    st_tensor *ts = xcalloc((size_t)n + 1, sizeof *ts);
    for (int i = 0; i < n && rc == 0; i++) {
        const torch_file_tensor *t = torch_file_get(tf, i);
        const char *name = strncmp(t->name, "module.", 7) == 0 ? t->name + 7 : t->name;
        if (torch_file_is_script(tf) && openai_extra(name)) continue;
        st_tensor *s = &ts[kept++];
        if (st_dtype_parse(t->dtype, &s->dtype) != 0) rc = err_set("%s: %s: unsupported dtype %s", path, name, t->dtype);
        s->name = name, s->ndim = t->ndim, s->data = t->data, s->nbytes = t->nbytes, s->numel = 1;
        for (int d = 0; d < t->ndim; d++) s->shape[d] = t->shape[d], s->numel *= t->shape[d];
    }
    st_file *f = NULL;
    if (rc == 0) f = st_open_tensors(path, ts, kept, release_torch_file, tf);
    else torch_file_close(tf);
    free(ts);
    return f;
}

st_file *weights_open(const char *path) {
    torch_file_kind kind;
    if (torch_file_sniff(path, &kind) != 0) return NULL;
    if (kind == TORCH_FILE_LEGACY) {
        err_set("%s: PyTorch's legacy (non-zip, before 1.6) torch.save format, which only Python reads: "
                "save it again with torch.save of PyTorch >= 1.6, or as safetensors", path);
        return NULL;
    }
    return kind == TORCH_FILE_OTHER ? st_open(path) : open_torch(path);
}
