// reader: the interface between the loader and an on-disk sample format, and the table of formats.
//
// A data source (one entry of loader_config.data) is a list of units (files) of samples, each
// unit holding a known number of samples addressed by index 0..n-1. The loader names every sample
// by (unit over all sources, index), and that pair is all it keeps or saves (the sampler's
// references, the saved position of docs/data.md): a format holds no position of its own, so
// nothing about it enters a checkpoint. It must therefore read any sample of a unit again by its
// index (after a restore, and for the replacement of a corrupt sample), not only in sequence.
//
// The formats: clipc's HDF5 shards under a manifest (reader_shard.c, docs/data-format.md).
//
// Adding a format (reading webdataset tars or a folder of images in place, say):
//   1. a new file loader/reader_NAME.c defining `const sample_format reader_format_NAME` with the
//      functions below (list the units and their sample counts, open a unit, read a run, hand out
//      a sample of the run, close), returning -1/NULL with err_msg() naming the file and defect;
//   2. its `claims` says which data paths are its own (an extension, a folder's contents);
//   3. its declaration below, one line in the table of loader/reader.c and the file in
//      loader/CMakeLists.txt.
// The loader, the sampler and the saved position do not change. Image bytes may be any format
// image/image.h decodes; a sample whose image does not decode is a corrupt sample (the loader's
// rule, loader/loader.h), not a reader error.
#ifndef CLIPC_LOADER_READER_H
#define CLIPC_LOADER_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// One open unit of a format (opaque; each format defines its own struct).
typedef struct sample_reader sample_reader;

typedef struct {
    const char *path;      // a path the format's open() takes
    int64_t num_samples;   // as the listing says (the loader checks it against open's count)
} reader_unit;

// What a source lists: its units in order, its class names (labelled sets), and the format's own
// data behind them.
typedef struct {
    const char *path;          // the listing itself (a manifest), for messages
    int n_units;
    reader_unit *units;        // (n_units)
    int64_t num_samples;       // over all units
    int n_classes;             // 0 for an unlabelled set
    const char *const *class_names;  // (n_classes)
    void *impl;                // the format's data (freed by release)
} reader_listing;

// One sample of the run last read; the pointers stay valid until the next read or close.
typedef struct {
    const uint8_t *image;      // the stored image file's bytes
    size_t image_size;
    const char *caption, *key; // UTF-8, NUL-terminated
    int32_t label;             // -1 for an unlabelled set
} reader_sample;

// A format as a table of functions. One sample_reader is used by one thread at a time; several
// may be open at once in different threads (the loader's reader thread and its workers).
typedef struct {
    const char *name;                                            // "clipc-shard"
    bool (*claims)(const char *data_path);                       // whether a source path is this format's
    int (*list)(const char *data_path, reader_listing *out);     // 0, or -1 naming the path and defect
    void (*release)(reader_listing *listing);
    sample_reader *(*open)(const char *unit_path);               // validates; NULL naming the unit
    int64_t (*count)(const sample_reader *r);                    // samples in the open unit
    // Reads samples [first, first + count) (a run: the loader reads in sequence in runs of up to
    // 64, and single samples out of sequence). Returns 0 or -1 naming the unit.
    int (*read)(sample_reader *r, int64_t first, int64_t count);
    void (*get)(const sample_reader *r, int64_t i, reader_sample *out);  // i within the last run read
    void (*close)(sample_reader *r);                             // NULL is ignored
} sample_format;

// The formats (one file each), in loader/reader.c's table.
extern const sample_format reader_format_shard;

// The format that reads a source path: the first of the table that claims it (none: the shard
// format, whose listing then names what is wrong with the path).
const sample_format *reader_format_find(const char *data_path);

#endif
