// The tensorboard/event_file.h of a clipc built without libprotobuf-c, protoc-c or ISA-L: opening
// an event file fails, saying so.
#include "tensorboard/event_file.h"

#include "common/error.h"

bool tensorboard_built(void) { return false; }

tensorboard_file *tensorboard_open(const char *dir) {
    err_set("%s: this clipc was built without TensorBoard event files (libprotobuf-c, protoc-c or ISA-L not "
            "found when it was configured)", dir);
    return NULL;
}

void tensorboard_close(tensorboard_file *f) { (void)f; }

const char *tensorboard_path(const tensorboard_file *f) {
    (void)f;
    return "";
}

int tensorboard_write_scalars(tensorboard_file *f, int64_t step, int n, const char *const *tags, const float *values) {
    (void)f, (void)step, (void)n, (void)tags, (void)values;
    return err_set("this clipc was built without TensorBoard event files");
}
