#!/bin/sh
# Checks that the function names README.md and docs/*.md cite exist in the sources.
#
# A cited name is a lowercase C identifier with an underscore inside an inline code span (text
# between backticks, outside ``` blocks; it may go on over a line break) that is either
#   - the whole span, alone or followed by "()" or "(arguments)": `adamw_step`, `adamw_step()`;
#   - or written just before "(" inside a span, not after ".", ":" or ">" (a member, or another
#     language's qualified name): `x = loss_contrastive_rows(a, b)`.
# It is checked when its first word (before the first "_") begins a function declared at the
# start of a line in a header of a library folder (every top folder but tests/, bench/, build*/),
# that is when it reads as clipc's API: `distill_...`, `tensor_...`, `adamw_...`. Names of other
# projects that share such a word are listed in FOREIGN below. A checked name must occur as an
# identifier in a *.c, *.h, *.cpp or *.hpp file of the tree (outside build*/), on a line or in the
# part of a line that is not a // comment: a function, macro, type, field or string key.
# Usage: test_docs.sh SOURCE_ROOT
set -eu
root=$1
cd "$root"

# Python and config names of OpenAI's tokenizer and OpenCLIP that begin like a clipc module.
FOREIGN='bytes_to_unicode image_mean image_std image_interpolation zero_shot_classifier'

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sources() {
  find . \( -name 'build*' -o -name '.git' \) -prune -o \
    \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.hpp' \) -type f -print
}

# Every identifier of the sources outside // comments.
sources | xargs sed -e 's|^[[:space:]]*//.*||' -e 's|[[:space:]]//.*||' |
  grep -o '[A-Za-z_][A-Za-z0-9_]*' | sort -u > "$tmp/words"

# The first words of the functions the library headers declare.
for dir in */; do
  case "$dir" in tests/|bench/|build*) continue ;; esac
  for h in "$dir"*.h "$dir"*.hpp; do [ -f "$h" ] && cat "$h"; done
done | sed -n 's/^[A-Za-z_][A-Za-z0-9_ ]*[ *]\([a-z][a-z0-9]*\)_[a-z0-9_]*(.*/\1/p' | sort -u > "$tmp/prefixes"

# FILE:LINE:NAME for every cited name (LINE: where its span opens; a span may go on over a line
# break, never past a blank line).
awk '
function cite(s, line,    name, before) {
  if (s ~ /^[a-z][a-z0-9]*_[a-z0-9_]*(\(.*\))?$/) { sub(/\(.*/, "", s); print FILENAME ":" line ":" s; return }
  while (match(s, /[A-Za-z0-9_]+\(/)) {
    name = substr(s, RSTART, RLENGTH - 1)
    before = RSTART > 1 ? substr(s, RSTART - 1, 1) : ""
    if (name ~ /^[a-z][a-z0-9]*_[a-z0-9_]*$/ && before != "." && before != ":" && before != ">")
      print FILENAME ":" line ":" name
    s = substr(s, RSTART + RLENGTH)
  }
}
FNR == 1 { fence = 0; open = 0 }
/^[ \t]*```/ { fence = !fence; open = 0; next }
fence { next }
/^[ \t]*$/ { open = 0; next }
{
  n = split($0, parts, "`")
  if (open) span = span " " parts[1]
  for (i = 2; i <= n; i++) {
    if (open) cite(span, start)
    else { span = ""; start = FNR }
    open = !open
    if (open) span = parts[i]
  }
}' README.md docs/*.md > "$tmp/cited"

bad=0 checked=0
while IFS=: read -r file line name; do
  grep -qx "${name%%_*}" "$tmp/prefixes" || continue
  case " $FOREIGN " in *" $name "*) continue ;; esac
  checked=$((checked + 1))
  if ! grep -qx "$name" "$tmp/words"; then
    echo "test_docs: $file:$line: \`$name\` is not defined or declared in the sources (cite the real name)"
    bad=1
  fi
done < "$tmp/cited"
echo "test_docs: $checked citations of clipc names checked"
[ "$bad" -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit "$bad"
