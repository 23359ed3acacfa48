// datafiles: where the data files clipc ships are found (model configs in "models/", zero-shot
// class names and templates in "zeroshot/": the contents of the source tree's configs/). They
// are looked up relative to the running binary, never the current folder:
//   installed   PREFIX/bin/clipc     -> PREFIX/share/clipc/<rel>   (cmake --install)
//   build tree  BUILD/cli/clipc      -> BUILD/share/clipc/<rel>    (copied there by the build)
// so clipc finds them from any working directory; tests and benchmarks in BUILD/*/ likewise.
#ifndef CLIPC_COMMON_DATAFILES_H
#define CLIPC_COMMON_DATAFILES_H

#include <stddef.h>

// The path of shipped file or folder rel (e.g. "zeroshot/imagenet-templates.txt") into out.
// Returns 0, or -1 with a message naming the path looked for when it does not exist.
int datafile_path(const char *rel, char *out, size_t cap);

#endif
