#!/bin/sh
# Checks the shipped zero-shot lists (configs/zeroshot): imagenet-classnames.txt and
# imagenet-templates.txt are OpenCLIP's IMAGENET_CLASSNAMES and OPENAI_IMAGENET_TEMPLATES verbatim
# (read from OpenCLIP's source tarball); imagenet-synsets.txt maps the 1000 sorted synsets to those
# same names; imagenet-classnames-disambiguated.txt differs only where the verbatim list repeats a
# name (lines 837-838, "sunglasses" twice) and has no repeats.
# Usage: test_zeroshot_lists.sh ZEROSHOT_DIR OPENCLIP_SRC_TARBALL
set -eu
dir=$1 tarball=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "test_zeroshot_lists: $*"; exit 1; }
# A list without its '#' source lines (which every list reader skips).
for f in imagenet-classnames imagenet-templates imagenet-synsets imagenet-classnames-disambiguated; do
  grep -v '^#' "$dir/$f.txt" > "$work/$f.body" || true
done

tar -xzf "$tarball" -C "$work" --wildcards '*/src/open_clip/zero_shot_metadata.py'
meta=$(find "$work" -name zero_shot_metadata.py)
python3 - "$meta" "$work" <<'PY'
import sys
ns = {}
exec(open(sys.argv[1]).read(), ns)
with open(sys.argv[2] + "/classnames.txt", "w") as f:
    f.write("".join(c + "\n" for c in ns["IMAGENET_CLASSNAMES"]))
with open(sys.argv[2] + "/templates.txt", "w") as f:
    f.write("".join(t("{}") + "\n" for t in ns["OPENAI_IMAGENET_TEMPLATES"]))
PY
cmp -s "$work/classnames.txt" "$work/imagenet-classnames.body" || fail "imagenet-classnames.txt is not OpenCLIP's IMAGENET_CLASSNAMES"
cmp -s "$work/templates.txt" "$work/imagenet-templates.body" || fail "imagenet-templates.txt is not OpenCLIP's OPENAI_IMAGENET_TEMPLATES"

cut -d' ' -f2- "$work/imagenet-synsets.body" > "$work/synset-names.txt"
cmp -s "$work/synset-names.txt" "$work/imagenet-classnames.body" || fail "imagenet-synsets.txt names differ from imagenet-classnames.txt"
[ "$(cut -d' ' -f1 "$work/imagenet-synsets.body" | sort -c 2>&1 && echo sorted)" = sorted ] || fail "imagenet-synsets.txt is not in sorted synset order"

d="$work/imagenet-classnames-disambiguated.body"
[ "$(wc -l < "$d")" -eq 1000 ] || fail "$d: not 1000 lines"
[ -z "$(sort "$d" | uniq -d)" ] || fail "$d repeats: $(sort "$d" | uniq -d | head -n 3)"
changed=$(diff "$work/imagenet-classnames.body" "$d" | sed -n 's/^\([0-9][0-9,]*\)c.*/\1/p' | tr '\n' ' ')
[ "$changed" = "745 837,838 " ] || fail "$d differs from the verbatim list at lines '$changed', expected 745 837,838"
echo "test_zeroshot_lists: ok"
