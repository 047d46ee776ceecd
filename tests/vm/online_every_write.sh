#!/bin/sh
# Guest side of the VM scenarios "online-every-write" (OP rotate) and
# "online-decrypt-every-write" (OP decrypt, decrypt-online): `volctl
# rotate-volume-key --online` or `volctl disable-encryption --online` (the
# open, mounted volume; the run in the same process), or `volctl
# disable-encryption --activate` (the closed volume activated by its
# header file once the decryption is recorded, then decrypted through
# it: what a boot does with `decryptInPlace`, in one process), cut at
# every write it makes to the device (and, decrypting, to the header file
# it keeps in /tmp/hdr),
# whole and torn, with the write-cutting injector (its count kept in a
# file, VOLCTL_CUT_SHARED, as a boot's online run in a process of its own
# would share it). After each cut the backing file is copied at once:
# that copy is the disk the power cut left (writes still queued in the
# kernel's device-mapper and filesystem layers never reach it). Whatever
# the dead run left in device-mapper is then removed.
#
# rotate: the copy must open by its passphrase (`cryptsetup`, or `volctl
# plan` in the one rotation state cryptsetup cannot open); then the next
# `volctl converge` runs and, outside volctl, `cryptsetup` must find no
# reencryption left, open keyslot 0 by the passphrase, and the data it
# decrypts must pass `e2fsck -fn` with every file's SHA-256 equal.
# decrypt: the device's header, or else the header file, must open by the
# passphrase (`cryptsetup`, `--header`), unless libcryptsetup's teardown
# has wiped its keyslots, every byte plain (`e2fsck -fn` passes on the
# device); then
# the next `volctl disable-encryption` (offline) finishes it and, outside
# volctl, the device is no LUKS2 volume, the header file is gone, and the
# device itself passes `e2fsck -fn` with every file's SHA-256 equal.
#
# Usage: online_every_write.sh OP CONFIG PASSPHRASE MODES [N...]
# (VOLCTL_SWEEP_DEBUG=1: decrypting, each POINT line ends with the header
# file's JSON and the run's last lines, to look into one)
# (MODES: "whole", "torn" or both; with N...: only those cut points, to
# look into one)
# Prints "WRITES N", then one "POINT MODE N ok" or "POINT MODE N FAIL why"
# line per cut point, then "SWEEP-DONE".
DEBUG=$VOLCTL_SWEEP_DEBUG
OP=$1
CFG=$2
PASS=$3
MODES=$4
shift 4
ONLY="$*"
INJ=/lib/cut_writes.so
RUN=/tmp/run
HDR=/tmp/hdr
H=$HDR/persistence/luks2-header
mkdir -p /mnt/w $RUN

attach() { l=$(losetup -f) && losetup "$l" "$1" && echo "$l"; }
open_w() { printf %s "$PASS" | cryptsetup open --key-file - "$1" w; }
devices() { dmsetup ls 2>/dev/null | grep -v 'No devices' | cut -f1; }

# Nothing left of a dead run's device-mapper state: its devices resumed
# (a suspended one would block the unmount), the filesystem unmounted,
# the devices removed, the loop devices detached.
clean_up() {
  for d in $(devices) $(devices); do dmsetup --noudevsync resume "$d" 2>/dev/null; done
  umount /mnt/w 2>/dev/null || umount -l /mnt/w 2>/dev/null
  i=0
  while [ -n "$(devices)" ] && [ $i -lt 5 ]; do
    for d in $(devices); do dmsetup --noudevsync remove --force "$d" >/dev/null 2>&1; done
    i=$((i+1))
  done
  for l in $(losetup -a | cut -d: -f1); do losetup -d "$l"; done
}

status_file() { # loop device
  cat > $RUN/status.json <<EOF
{"config_source": "test", "volumes": [{"name": "persistence", "label": "persistence", "partition": null, "device": "$1", "phase": "ready", "encrypted": true, "unlocked_by": null, "keyslots": [0], "kdf_runs": 1, "changes": [], "mapped_device": "/dev/mapper/w", "created": false, "mount_point": "/mnt/w", "error": null}]}
EOF
}

# The base: 16 MiB of ext4 with files, under LUKS2 made by volctl.
truncate -s 32M /tmp/base.img
L=$(attach /tmp/base.img)
volctl converge --volume persistence --device "$L" -f "$CFG" > /tmp/base.out 2>&1 || { cat /tmp/base.out; echo "BASE-FAILED"; exit 1; }
open_w "$L" && mkfs.ext4 -q /dev/mapper/w && mount /dev/mapper/w /mnt/w || { echo "BASE-FAILED"; exit 1; }
dd if=/dev/urandom of=/mnt/w/big bs=1M count=5 2>/dev/null
mkdir -p /mnt/w/a/b/c && echo deep > /mnt/w/a/b/c/f
dd if=/dev/urandom of=/mnt/w/a/mid bs=4k count=37 2>/dev/null
(cd /mnt/w && find . -type f | sort | xargs sha256sum) > /tmp/sums
clean_up

# The arguments of the online operation on the open, mounted volume.
op_args() {
  case $OP in
    rotate) echo "rotate-volume-key --volume persistence -f $CFG --online --status-file $RUN/status.json" ;;
    decrypt-online) echo "disable-encryption --volume persistence -f $CFG --online --status-file $RUN/status.json --header-dir $HDR" ;;
    decrypt) echo "disable-encryption --volume persistence --device $L -f $CFG --activate w --status-file $RUN/status.json --header-dir $HDR" ;;
  esac
}

# One run of the online operation on a fresh copy: uncut ("count") or cut
# at write N (1-based) in MODE. Leaves the disk it left in /tmp/cut.img.
run_op() { # MODE N
  cp /tmp/base.img /tmp/w.img
  rm -rf $HDR && mkdir -p $HDR
  L=$(attach /tmp/w.img)
  if [ "$OP" != decrypt ]; then
    open_w "$L" && mount /dev/mapper/w /mnt/w || return 1
  fi
  status_file "$L"
  rm -f /tmp/count
  if [ "$1" = count ]; then
    cut=""
  else
    cut="VOLCTL_CUT_AFTER=$(($2 - 1)) VOLCTL_CUT_MODE=$1"
  fi
  timeout 300 env LD_PRELOAD=$INJ VOLCTL_CUT_PATH="$L" VOLCTL_CUT_FOLDER=$HDR VOLCTL_CUT_SHARED=/tmp/count $cut \
    volctl $(op_args) > /tmp/op.out 2>&1
  rc=$?
  cp /tmp/w.img /tmp/cut.img
  clean_up
  return $rc
}

# After a rotation: it opens, the next converge finishes it, the data is
# whole.
check_rotate() {
  L=$(attach /tmp/cut.img)
  if ! printf %s "$PASS" | cryptsetup open --test-passphrase --key-file - "$L" 2>/dev/null; then
    volctl plan --volume persistence --device "$L" -f "$CFG" > /dev/null 2>&1 || { echo "opens by nothing after the cut"; return; }
  fi
  timeout 300 volctl converge --volume persistence --device "$L" -f "$CFG" > /tmp/next.out 2>&1 || { echo "the next converge failed: $(tail -2 /tmp/next.out | tr '\n' ' ')"; return; }
  cryptsetup luksDump --dump-json-metadata "$L" | grep -q '"requirements"' && { echo "a reencryption is still recorded"; return; }
  printf %s "$PASS" | cryptsetup open --test-passphrase --key-slot 0 --key-file - "$L" || { echo "slot 0 does not open"; return; }
  open_w "$L" || { echo "cryptsetup cannot open it"; return; }
  files_pass /dev/mapper/w
}

# After a decryption: its keys open it (by the device's header or the
# file's), the next offline run finishes it, the device is plain and whole.
check_decrypt() {
  L=$(attach /tmp/cut.img)
  [ -n "$DEBUG" ] && { cryptsetup luksDump --dump-json-metadata $H 2>&1 | tr -d ' \n'; echo; tail -3 /tmp/op.out; } > /tmp/debug.txt 2>&1
  if cryptsetup isLuks "$L"; then
    printf %s "$PASS" | cryptsetup open --test-passphrase --key-file - "$L" || { echo "the device's header opens by nothing"; return; }
  elif [ -f $H ] && ! printf %s "$PASS" | cryptsetup open --test-passphrase --header $H --key-file - "$L" 2>/dev/null; then
    # libcryptsetup's teardown (keyslots wiped) once every byte is plain.
    e2fsck -fn "$L" > /dev/null 2>&1 || { echo "the header file opens by nothing and the data is not all plain"; return; }
  fi
  if cryptsetup isLuks "$L" || [ -f $H ]; then
    timeout 300 volctl disable-encryption --volume persistence --device "$L" -f "$CFG" --header-dir $HDR > /tmp/next.out 2>&1 || { echo "the next run failed: $(tail -2 /tmp/next.out | tr '\n' ' ')"; return; }
  fi
  cryptsetup isLuks "$L" && { echo "still LUKS2"; return; }
  [ -e $H ] && { echo "the header file is left"; return; }
  files_pass "$L"
}

# The filesystem on device $1: e2fsck -fn passes, every file as it was.
files_pass() {
  e2fsck -fn "$1" > /tmp/fsck.out 2>&1 || { echo "e2fsck: $(tail -3 /tmp/fsck.out | tr '\n' ' ')"; return; }
  mount -o ro "$1" /mnt/w || { echo "does not mount"; return; }
  (cd /mnt/w && sha256sum -c -s /tmp/sums) || { echo "file checksums differ"; return; }
  echo ok
}

check() {
  case $OP in
    rotate) check_rotate ;;
    *) check_decrypt ;;
  esac
}

run_op count 0 || { cat /tmp/op.out; echo "UNCUT-FAILED"; exit 1; }
N=$(cat /tmp/count)
echo "WRITES $N"
echo "CRYPTO $(grep -m1 -A1 'xts(aes)' /proc/crypto | tail -1)"
[ "$(check)" = ok ] || { echo "UNCUT-CHECK-FAILED"; exit 1; }
clean_up
for mode in $MODES; do
  for n in ${ONLY:-$(seq 1 "$N")}; do
    if run_op $mode $n; then
      echo "POINT $mode $n FAIL not cut: $(tail -1 /tmp/op.out)"
    else
      echo "POINT $mode $n $(check)$([ -n "$DEBUG" ] && tr '\n' ' ' < /tmp/debug.txt)"
    fi
    clean_up
  done
done
echo "SWEEP-DONE"
