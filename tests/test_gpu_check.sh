#!/bin/sh
# Tests scripts/gpu-check.sh where CI runs, without a GPU: it stops at its first assertion with
# one line saying there is no GPU, a summary line, and exit status 1, at once; with a GPU listed
# (a stand-in nvidia-smi) but no .gpu/ carried, it stops after the next one (configure), naming
# what is missing. Nothing is built or run beyond that.
# Usage: test_gpu_check.sh SOURCE_DIR WORK_DIR
set -eu
src=$1 work=$2
rm -rf "$work"
mkdir -p "$work/bin" "$work/fake"
passed=0 failed=0
expect() {  # expect WHAT FILE PATTERN
  if grep -q "$3" "$2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $1 (no '$3' in $2)"; cat "$2"; fi
}

# No GPU: no nvidia-smi on the PATH (bash and the basic tools stay reachable through their own folder).
ln -s "$(command -v bash)" "$(command -v grep)" "$(command -v date)" "$(command -v nproc)" "$work/bin/"
status=0
(cd "$work" && PATH="$work/bin" bash "$src/scripts/gpu-check.sh") > "$work/nogpu.txt" 2>&1 || status=$?
[ "$status" -eq 1 ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAILED: exit status $status without a GPU"; }
expect "the reason" "$work/nogpu.txt" "no nvidia-smi: this machine has no NVIDIA driver"
expect "the summary" "$work/nogpu.txt" "^gpu-check: 0 passed, 1 failed (gpu)"
if grep -q "== configure" "$work/nogpu.txt"; then failed=$((failed + 1)); echo "FAILED: went on past the first assertion"; else passed=$((passed + 1)); fi

# A GPU listed, nothing carried: configure fails and names .gpu.
cat > "$work/fake/nvidia-smi" <<'SMI'
#!/bin/sh
case "$*" in
  -L) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)" ;;
  *) echo "NVIDIA H100 80GB HBM3, 81559 MiB, 580.159.04" ;;
esac
SMI
chmod +x "$work/fake/nvidia-smi"
status=0
(cd "$work" && PATH="$work/fake:$PATH" bash "$src/scripts/gpu-check.sh") > "$work/nocarry.txt" 2>&1 || status=$?
[ "$status" -eq 1 ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAILED: exit status $status without .gpu"; }
expect "the missing folder" "$work/nocarry.txt" ".gpu/unpack.sh is missing: carry .gpu"
expect "the summary" "$work/nocarry.txt" "^gpu-check: 1 passed, 1 failed (configure)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
