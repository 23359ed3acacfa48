// Fuzz harness for the dataset manifest reader (shards/manifest.c): any file loads or fails with
// one line naming it; a loaded manifest's shard counts add up to its total.
#include <stdint.h>

#include "shards/manifest.h"
#include "fuzz_check.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_temp_file(data, size, ".json");
    manifest *m = manifest_load(path);
    if (!m) {
        FUZZ_CHECK_ERROR(path);
        return 0;
    }
    int64_t total = 0;
    for (int i = 0; i < m->n_shards; i++) {
        CLIPC_ASSERT(m->shards[i].num_samples >= 0 && m->shards[i].resolved_path != NULL);
        total += m->shards[i].num_samples;
    }
    CLIPC_ASSERT(total == m->num_samples);
    for (int c = 0; c < m->n_classes; c++) CLIPC_ASSERT(m->class_names[c] != NULL);
    manifest_free(m);
    return 0;
}
