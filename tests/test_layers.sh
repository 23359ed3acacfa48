#!/bin/sh
# Checks that every #include "folder/..." of the libraries points down the layer order of
# docs/architecture.md: a folder may include its own headers and those of folders of a LOWER
# layer only (never the same layer, never a higher one). tests/ and bench/ sit above everything.
# A folder with C sources that is missing from the table fails too, so a new module must be
# placed in the order. It also holds the driver to parsing, calling and printing: a file under
# cli/ may call no function of the shim's API (shim/*.h) except those of the allow-list below,
# and holds no tensor handle (a library that returned one would leave tensor work to the driver).
# Usage: test_layers.sh SOURCE_ROOT
set -eu
root=$1
layers='common 0
shim 1
text 1
image 1
tensorboard 1
param 2
shards 2
model 3
convert 3
loader 3
loss 4
optim 4
distributed 4
session 5
eval 6
train 7
finetune 8
plot 8
cli 9'
rank() { printf '%s\n' "$layers" | awk -v f="$1" '$1 == f { print $2 }'; }

bad=0 checked=0
for dir in "$root"/*/; do
  dir=${dir%/}
  folder=${dir##*/}
  case "$folder" in tests|bench|build*|configs|docs|scripts|cmake) continue ;; esac
  [ -n "$(find "$dir" -maxdepth 1 \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.hpp' \) | head -n 1)" ] || continue
  r=$(rank "$folder")
  if [ -z "$r" ]; then
    echo "test_layers: $folder/ has sources but no place in the layer order (add it to tests/test_layers.sh and docs/architecture.md)"
    bad=1
    continue
  fi
  for f in "$dir"/*.c "$dir"/*.h "$dir"/*.cpp "$dir"/*.hpp "$dir"/*.inc; do
    [ -f "$f" ] || continue
    for inc in $(sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z_]*\)/[^"]*".*|\1|p' "$f"); do
      checked=$((checked + 1))
      [ "$inc" = "$folder" ] && continue
      ri=$(rank "$inc")
      if [ -z "$ri" ] || [ "$ri" -ge "$r" ]; then
        echo "test_layers: ${f#$root/} includes $inc/ (layer ${ri:-?}) from $folder/ (layer $r): includes must point down"
        bad=1
      fi
    done
  done
done
# cli/ calls libraries that return host data; of the shim it may only ask what the build and the
# machine have. The allow-list, one name a line:
cli_allowed='tensor_torch_version
tensor_has_cuda_build
tensor_cuda_device_count
tensor_get_threads
tensor_set_threads
dist_backend_built'
# tensor_torch_version, tensor_has_cuda_build: the libtorch version and build (clipc info, train)
# tensor_cuda_device_count: how many GPUs (clipc info, the benchmark's choice of cuda:LOCAL_RANK)
# tensor_get_threads, tensor_set_threads: libtorch's intra-op threads (clipc info reports them)
# dist_backend_built: which collective backends are compiled in (clipc info)
shim_api=$(cat "$root"/shim/*.h | sed 's|//.*||' | grep -o '\<[a-z_][a-z_0-9]*(' | tr -d '(' | sort -u)
for f in "$root"/cli/*.c "$root"/cli/*.h; do
  [ -f "$f" ] || continue
  sed 's|//.*||' "$f" | grep -o '\<[a-z_][a-z_0-9]*(' | tr -d '(' | sort -u |
    awk -v api="$shim_api" -v allowed="$cli_allowed" -v file="${f#$root/}" '
      BEGIN { n = split(api, a, "\n"); for (i = 1; i <= n; i++) shim[a[i]] = 1
              n = split(allowed, a, "\n"); for (i = 1; i <= n; i++) ok[a[i]] = 1 }
      ($0 in shim) && !($0 in ok) { print "test_layers: " file " calls " $0 " (shim/): cli/ parses, calls a library and prints; move the tensor work into a library"; bad = 1 }
      END { exit bad }' || bad=1
  if sed 's|//.*||' "$f" | grep -q '\<tensor[[:space:]]*\*'; then
    echo "test_layers: ${f#$root/} holds a tensor handle: cli/ gets host data from the libraries"
    bad=1
  fi
done

# One home for collectives: only distributed/ (and shim/ itself) includes shim/dist.h; every other
# folder reaches the process group through distributed/dist.h, whose control-message helpers
# place host values on the group's device.
for f in $(grep -rl --include='*.c' --include='*.h' --include='*.cpp' --include='*.hpp' \
    '#[[:space:]]*include[[:space:]]*"shim/dist.h"' "$root" 2>/dev/null); do
  rel=${f#$root/}
  case "$rel" in distributed/*|shim/*|tests/*|bench/*|build*) continue ;; esac
  echo "test_layers: $rel includes shim/dist.h: reach collectives through distributed/dist.h"
  bad=1
done

echo "test_layers: $checked includes checked; cli/ checked against $(printf '%s\n' "$shim_api" | wc -l) shim functions"
[ "$bad" -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit "$bad"
