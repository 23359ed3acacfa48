// bpe_train: learns byte-level BPE merges from captions, for `clipc tokenizer train`.
//
// Captions are cleaned and split exactly as the tokenizer does (clip_text), each piece becomes
// its UTF-8 bytes with the last one marked end-of-word, and the most frequent adjacent pair of
// symbols is merged, again and again (ties: the pair of lowest symbol ids). The merges are written
// in CLIP's gzip format with a version line carrying TOKENIZER_TRAINER_MARK, so tokenizer_load()
// takes all of them: vocabulary = 512 byte tokens + one per merge + SOT + EOT.
#ifndef CLIPC_TEXT_BPE_TRAIN_H
#define CLIPC_TEXT_BPE_TRAIN_H

#include <stddef.h>

typedef struct bpe_trainer bpe_trainer;

bpe_trainer *bpe_trainer_init(void);
void bpe_trainer_free(bpe_trainer *t);

// Counts the pieces of one caption.
void bpe_trainer_add_text(bpe_trainer *t, const char *text, size_t len);
// Counts every line of a text file (gzip or plain) as one caption. Returns the number of lines,
// or -1 with err_msg() set.
long bpe_trainer_add_file(bpe_trainer *t, const char *path);

// Learns up to n_merges merges, stopping early when no pair occurs min_count times. Returns the
// number of merges learned in all.
int bpe_trainer_learn(bpe_trainer *t, int n_merges, long min_count);
int bpe_trainer_n_merges(const bpe_trainer *t);

// Writes the merges file (gzip), replacing path only once it is complete. Returns 0 or -1.
int bpe_trainer_write(const bpe_trainer *t, const char *path);

#endif
