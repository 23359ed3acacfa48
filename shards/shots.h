// shots: K labelled samples per class, drawn deterministically from a sharded set and written
// out as a set of shards of their own (the training set of few-shot learning, `clipc finetune`).
//
// For each class c, the samples labelled c are listed in file order (shards in manifest order,
// samples in shard order) and the first K positions of a Fisher-Yates shuffle seeded from
// (seed, c) are taken, in draw order. So the draw depends only on (seed, class, the set), and the
// K-shot set is a prefix of the K'-shot set for K < K' (shot sets are nested).
#ifndef CLIPC_SHARDS_SHOTS_H
#define CLIPC_SHARDS_SHOTS_H

#include <stdint.h>

#include "shards/manifest.h"

typedef struct {
    int n_classes, shots;  // C, K
    int32_t *shard;        // (C*K) index into the manifest's shards; class-major, draw order
    int64_t *index;        // (C*K) sample within that shard
} shot_set;

// Draws `shots` samples of every class of the labelled set m. Returns 0, or -1 with err_msg()
// naming the set and the class that has fewer than `shots` samples (or an unlabelled set).
int shots_draw(const manifest *m, int shots, uint64_t seed, shot_set *out);
void shots_free(shot_set *s);

// Writes the drawn samples (image bytes, captions, keys and labels as they are in m) in set order
// into one shard "<dir>/shots.h5" with "<dir>/manifest.json"; dir is created when missing.
// Returns 0 or -1.
int shots_write(const manifest *m, const shot_set *s, const char *dir);

#endif
