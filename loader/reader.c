#include "loader/reader.h"

#include <stddef.h>

// The formats, in the order they are asked.
static const sample_format *const formats[] = {
    &reader_format_shard,
};

const sample_format *reader_format_find(const char *data_path) {
    size_t n = sizeof formats / sizeof formats[0];
    for (size_t i = 0; i < n; i++)
        if (formats[i]->claims(data_path)) return formats[i];
    return &reader_format_shard;  // claimed by none: the manifest reader's message says what is wrong
}
