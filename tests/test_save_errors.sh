#!/usr/bin/env bash
# A checkpoint that cannot be written, for real reasons: a full disk (ENOSPC, on a small tmpfs in a
# private mount namespace) and a read-only checkpoints folder (EACCES, as user nobody when run as
# root, since root ignores permissions). Each failed save must name the checkpoint and the system's
# reason, stop the run (exit 1) by default or go on with --on-save-error continue, leave no hidden
# leftovers, and leave the previous checkpoint usable.
# The ENOSPC part needs permission to mount a tmpfs (root, or unprivileged user namespaces); without
# it that part is reported as skipped.
# Usage: test_save_errors.sh CLIPC FASHION_MNIST_DIR WORK_DIR
#        test_save_errors.sh --enospc CLIPC FASHION_MNIST_DIR WORK_DIR   (inside the namespace)
set -euo pipefail
enospc_only=0
if [ "$1" = --enospc ]; then enospc_only=1; shift; fi
clipc=$1 fmnist=$2 work=$3
source "$(dirname "$0")/micro_run.sh"

fail() { echo "FAIL: $*"; [ -n "${out:-}" ] && cat "$out"; exit 1; }

# Runs `clipc train` as $as (empty: the current user) on run $logs/$name; output in $out.
run() {
  out=$work/out.txt
  local rc=0
  $as "$clipc" "${micro_args[@]}" --epochs 2 --logs "$logs" --name "$name" --save-frequency 0 "$@" > "$out" 2>&1 || rc=$?
  return $rc
}

# A first run saves step_2; the second runs to step 4 and cannot save. Both modes, then step_2
# still resumes. $1: what makes the folder unwritable (a function), $2: undoes it, $3: the reason.
check_failed_saves() {
  local block=$1 unblock=$2 reason=$3 ckpt=$logs/$name/checkpoints rc=0
  run --max-steps 2 --save-steps 2 || fail "first run"
  [ -f "$ckpt/step_2/model.safetensors" ] || fail "no step_2"
  $block
  run --resume latest --max-steps 4 --save-steps 4 || rc=$?
  [ $rc = 1 ] || fail "a failed save exited $rc, not 1"
  grep -q "saving checkpoint $ckpt/step_4: .*$reason" "$out" || fail "the error does not name step_4 and '$reason'"
  rc=0
  run --resume latest --max-steps 4 --save-steps 1 --on-save-error continue || rc=$?
  [ $rc = 0 ] || fail "--on-save-error continue exited $rc"
  [ "$(grep -c "$reason.*; continuing (--on-save-error continue)" "$out")" = 2 ] || fail "not 2 failed saves reported"
  grep '"type":"save_error","step":4,' "$logs/$name/metrics.jsonl" | grep -q '"checkpoint":"step_4"' || fail "no save_error line"
  $unblock
  if compgen -G "$ckpt/.*-*" > /dev/null; then fail "leftovers: $(echo "$ckpt"/.*-*)"; fi
  [ "$(cd "$ckpt" && echo *)" = step_2 ] || fail "checkpoints: $(cd "$ckpt" && echo *)"
  run --resume latest --max-steps 2 || fail "step_2 no longer resumes"
  grep -q "resumed from $ckpt/step_2 at step 2" "$out" || fail "did not resume from step_2"
  echo "$reason: the run stopped (exit 1) or continued as asked; step_2 intact and resumable"
}

fill_disk() {
  dd if=/dev/zero of="$logs/pad" bs=64k count=1 status=none
  dd if=/dev/zero of="$logs/filler" bs=64k status=none 2> /dev/null || true
  rm "$logs/pad"  # 64 KiB left: enough for the logs, not for a checkpoint
}
empty_disk() { rm -f "$logs/filler"; }

if [ $enospc_only = 1 ]; then
  logs=$work/disk name=full as=
  mkdir -p "$logs"
  mount -t tmpfs -o size=32m clipc-test "$logs"
  check_failed_saves fill_disk empty_disk "No space left on device"
  exit 0
fi

rm -rf "$work"
mkdir -p "$work"
micro_setup
chmod -R a+rX "$work"

# Read-only checkpoints folder: root ignores permissions, so then the runs are made as nobody.
logs=$work/ro name=readonly as=
if [ "$(id -u)" = 0 ]; then as="setpriv --reuid=nobody --regid=nogroup --clear-groups --"; fi
mkdir -p "$logs"
chmod 777 "$logs"
make_read_only() { chmod 555 "$logs/$name/checkpoints"; }
make_writable() { chmod 755 "$logs/$name/checkpoints"; }
check_failed_saves make_read_only make_writable "Permission denied"

# Full disk: a 32 MiB tmpfs mounted in a private mount namespace (gone when the test ends).
if unshare --mount --map-root-user true 2> /dev/null || unshare --mount true 2> /dev/null; then
  userns=--map-root-user
  unshare --mount true 2> /dev/null && userns=
  unshare --mount $userns --propagation private bash "$0" --enospc "$clipc" "$fmnist" "$work"
else
  echo "skipped the full-disk case: no permission to mount a tmpfs here"
fi
rm -rf "$work"
