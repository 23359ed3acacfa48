#!/bin/sh
# Tests `clipc tokenize` and `clipc tokenizer train` from the command line: the fixture's texts
# piped through `clipc tokenize` give OpenCLIP's ids line for line (with --vocab and through
# CLIPC_VOCAB), --context-length cuts lines, usage errors exit 2, and a trained merges file loads.
# Usage: test_cli_tokenize.sh CLIPC FIXTURE_SPLIT TOKENIZER_JSONL CLIP_MERGES_GZ WORK_DIR
set -eu
clipc=$1 split=$2 jsonl=$3 vocab=$4 work=$5
rm -rf "$work"
mkdir -p "$work"
"$split" "$jsonl" "$work/texts.txt" "$work/expected.txt"

"$clipc" tokenize --vocab "$vocab" < "$work/texts.txt" > "$work/got.txt"
cmp "$work/expected.txt" "$work/got.txt"
echo "clipc tokenize: $(wc -l < "$work/got.txt") lines identical to OpenCLIP"

CLIPC_VOCAB="$vocab" "$clipc" tokenize < "$work/texts.txt" > "$work/got_env.txt"
cmp "$work/expected.txt" "$work/got_env.txt"

"$clipc" tokenize --vocab "$vocab" --context-length 5 < "$work/texts.txt" > "$work/short.txt"
awk 'NF > 5 || $1 != 49406 || $NF != 49407 { bad = 1 } END { exit bad }' "$work/short.txt"

status=0
env -u CLIPC_VOCAB "$clipc" tokenize < /dev/null 2> "$work/err.txt" || status=$?
[ "$status" -eq 2 ]  # each check its own command: set -e does not stop on a failed `[ ] &&` list
grep -q CLIPC_VOCAB "$work/err.txt"
status=0
"$clipc" tokenize --vocab "$work/none.gz" < "$work/texts.txt" 2> "$work/err.txt" || status=$?
[ "$status" -eq 1 ]
grep -q "none.gz" "$work/err.txt"

"$clipc" tokenizer train "$work/texts.txt" --merges 500 --output "$work/merges.txt.gz" > "$work/train.txt"
grep -q "learned 500 merges" "$work/train.txt"
printf 'a photo of a cat\n' | "$clipc" tokenize --vocab "$work/merges.txt.gz" > "$work/own.txt"
awk '$1 != 1012 || $NF != 1013 { exit 1 }' "$work/own.txt"  # SOT/EOT = 512 + 500 + 0/1
rm -rf "$work"
