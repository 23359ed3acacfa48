// event_file: TensorBoard event files of scalars, the files TensorBoard's `--logdir` reads.
//
// A file is a sequence of TFRecords, each one Event protocol buffer (tensorboard/event.proto,
// packed by protobuf-c) framed as: its length (uint64, little-endian), the masked CRC32C of those 8
// bytes, the event, the masked CRC32C of the event (CRC32C from ISA-L; mask: rotate right by 15 and
// add 0xa282ead8). The first event holds file_version "brain.Event:2". Records are appended and
// flushed one at a time, so an interruption can only cut the last record short, which TensorBoard
// skips; every earlier record stays readable. Each open starts a new file, named as TensorBoard's
// own writers name theirs: events.out.tfevents.<unix time>.<hostname>.<pid>.<counter>.
// In a build without libprotobuf-c, protoc-c or ISA-L (event_file_none.c) opening fails, saying so.
#ifndef CLIPC_TENSORBOARD_EVENT_FILE_H
#define CLIPC_TENSORBOARD_EVENT_FILE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct tensorboard_file tensorboard_file;

// Whether this clipc writes event files (false in a build without the libraries).
bool tensorboard_built(void);

// Creates folder dir when missing (not its parents) and a new event file in it, with its first
// event written. NULL with a message naming dir on failure.
tensorboard_file *tensorboard_open(const char *dir);
void tensorboard_close(tensorboard_file *f);  // NULL is ignored

// The event file's path.
const char *tensorboard_path(const tensorboard_file *f);

// Appends one event at step holding n scalars (tags[i], values[i]) and flushes it to the file.
// Returns 0 or -1 with a message naming the file.
int tensorboard_write_scalars(tensorboard_file *f, int64_t step, int n, const char *const *tags, const float *values);

#endif
