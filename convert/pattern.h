// pattern: OpenCLIP-style lists of input files: '::'-separated patterns, each expanded with braces
// as Python's braceexpand (what webdataset and OpenCLIP's --train-data use):
//   "data/{00000..00999}.tar"  ranges, zero-padded to the wider bound when either bound starts with 0
//   "data/{a,b,c}.tar"         alternatives (may nest: "{a,{b,c}}")
//   "{0..10..2}", "{9..0}"     steps and descending ranges
// Several braces multiply ("{0..1}-{a,b}" gives 0-a 0-b 1-a 1-b), in order.
#ifndef CLIPC_CONVERT_PATTERN_H
#define CLIPC_CONVERT_PATTERN_H

// At most this many paths from one spec.
#define PATTERN_MAX_PATHS 10000000

// Expands spec into *paths (new strings). Returns the count, or -1 with err_msg() naming the
// pattern and the problem (unbalanced braces, a brace that is neither a list nor a range, too many).
int pattern_expand(const char *spec, char ***paths);
void pattern_free(char **paths, int n);

#endif
