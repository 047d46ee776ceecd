#!/bin/sh
# Guest side of the VM scenario "online-every-write": `volctl
# rotate-volume-key --online` (the open, mounted volume; its online run in
# the same process) cut at every write it makes to the device, whole and
# torn, with the write-cutting injector (its count kept in a file,
# VOLCTL_CUT_SHARED, as a boot's online run in a process of its own would
# share it). After each cut the backing file is copied at once: that copy
# is the disk the power cut left (writes still queued in the kernel's
# device-mapper and filesystem layers never reach it). Whatever the dead
# run left in device-mapper is then removed. The copy must open by its passphrase (`cryptsetup`, or
# `volctl plan` in the one rotation state cryptsetup cannot open); then
# the next `volctl converge` runs and, outside volctl, `cryptsetup` must
# find no reencryption left, open keyslot 0 by the passphrase, and the
# data it decrypts must pass `e2fsck -fn` with every file's SHA-256 equal.
#
# Usage: online_every_write.sh CONFIG PASSPHRASE MODES [N...]
# (MODES: "whole", "torn" or both; with N...: only those cut points, to
# look into one)
# Prints "WRITES N", then one "POINT MODE N ok" or "POINT MODE N FAIL why"
# line per cut point, then "SWEEP-DONE".
CFG=$1
PASS=$2
MODES=$3
shift 3
ONLY="$*"
INJ=/lib/cut_writes.so
RUN=/tmp/run
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

# One run of the online rotation on a fresh copy: uncut ("count") or cut
# at write N (1-based) in MODE. Leaves the disk it left in /tmp/cut.img.
rotate() { # MODE N
  cp /tmp/base.img /tmp/w.img
  L=$(attach /tmp/w.img)
  open_w "$L" && mount /dev/mapper/w /mnt/w || return 1
  status_file "$L"
  rm -f /tmp/count
  if [ "$1" = count ]; then
    cut=""
  else
    cut="VOLCTL_CUT_AFTER=$(($2 - 1)) VOLCTL_CUT_MODE=$1"
  fi
  timeout 300 env LD_PRELOAD=$INJ VOLCTL_CUT_PATH="$L" VOLCTL_CUT_SHARED=/tmp/count $cut \
    volctl rotate-volume-key --volume persistence -f "$CFG" --online --status-file $RUN/status.json > /tmp/rotate.out 2>&1
  rc=$?
  cp /tmp/w.img /tmp/cut.img
  clean_up
  return $rc
}

# After the run: it opens, the next converge finishes it, the data is whole.
check() {
  L=$(attach /tmp/cut.img)
  if ! printf %s "$PASS" | cryptsetup open --test-passphrase --key-file - "$L" 2>/dev/null; then
    volctl plan --volume persistence --device "$L" -f "$CFG" > /dev/null 2>&1 || { echo "opens by nothing after the cut"; return; }
  fi
  timeout 300 volctl converge --volume persistence --device "$L" -f "$CFG" > /tmp/next.out 2>&1 || { echo "the next converge failed: $(tail -2 /tmp/next.out | tr '\n' ' ')"; return; }
  cryptsetup luksDump --dump-json-metadata "$L" | grep -q '"requirements"' && { echo "a reencryption is still recorded"; return; }
  printf %s "$PASS" | cryptsetup open --test-passphrase --key-slot 0 --key-file - "$L" || { echo "slot 0 does not open"; return; }
  open_w "$L" || { echo "cryptsetup cannot open it"; return; }
  e2fsck -fn /dev/mapper/w > /tmp/fsck.out 2>&1 || { echo "e2fsck: $(tail -3 /tmp/fsck.out | tr '\n' ' ')"; return; }
  mount -o ro /dev/mapper/w /mnt/w || { echo "does not mount"; return; }
  (cd /mnt/w && sha256sum -c -s /tmp/sums) || { echo "file checksums differ"; return; }
  echo ok
}

rotate count 0 || { cat /tmp/rotate.out; echo "UNCUT-FAILED"; exit 1; }
N=$(cat /tmp/count)
echo "WRITES $N"
echo "CRYPTO $(grep -m1 -A1 'xts(aes)' /proc/crypto | tail -1)"
[ "$(check)" = ok ] || { echo "UNCUT-CHECK-FAILED"; exit 1; }
clean_up
for mode in $MODES; do
  for n in ${ONLY:-$(seq 1 "$N")}; do
    if rotate $mode $n; then
      echo "POINT $mode $n FAIL not cut: $(tail -1 /tmp/rotate.out)"
    else
      echo "POINT $mode $n $(check)"
    fi
    clean_up
  done
done
echo "SWEEP-DONE"
