#!/usr/bin/env bash
# Boots the VM once: DISK is the test disk (first virtio disk, /dev/vda),
# JOBDIR holds job.sh and its files (packed as a tar on /dev/vdb). Prints
# the serial console; exits with the job's exit status (qemu's own exit
# status says nothing about the guest), or 124 on timeout.
#
# Usage: tests/vm/run.sh DISK JOBDIR [TIMEOUT_SECONDS]
# Environment: VOLCTL_VM_QEMU_EXTRA (more qemu arguments), VOLCTL_VM_KERNEL
# (another kernel image, e.g. the bzImage for UEFI firmware, which cannot
# boot the ELF vmlinux), VOLCTL_VM_INITRD and VOLCTL_VM_APPEND (another
# initramfs and kernel command line: a real Debian's), VOLCTL_VM_MACHINE (default q35), VOLCTL_VM_CPU (default qemu64
# with RDRAND and AES-NI: TCG runs AES-NI far faster than table AES),
# VOLCTL_VM_SERIAL_SOCKET (the console on this unix socket instead of
# stdout, for a test that types on it: qemu waits for it to connect; the
# caller reads the exit marker itself, and this script exits with qemu's
# status).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/target/vm
DISK=${1:?usage: run.sh DISK JOBDIR [TIMEOUT]}
JOB=${2:?usage: run.sh DISK JOBDIR [TIMEOUT]}
TIMEOUT=${3:-180}
JOBIMG=$(mktemp --suffix=.tar)
trap 'rm -f "$JOBIMG"' EXIT
tar -cf "$JOBIMG" -C "$JOB" .
# Pad to a whole number of sectors.
truncate -s %512 "$JOBIMG"
LOG=$(mktemp)
SERIAL="-serial stdio"
if [ -n "${VOLCTL_VM_SERIAL_SOCKET:-}" ]; then
  SERIAL="-chardev socket,id=con0,path=$VOLCTL_VM_SERIAL_SOCKET,server=on,wait=on -serial chardev:con0"
fi
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -nodefaults -nographic -no-reboot \
  -machine ${VOLCTL_VM_MACHINE:-q35} -cpu ${VOLCTL_VM_CPU:-qemu64,+rdrand,+aes,+ssse3,+sse4.1,+sse4.2} -m 1024 -smp 1 \
  -kernel "${VOLCTL_VM_KERNEL:-$OUT/vmlinux}" -initrd "${VOLCTL_VM_INITRD:-$OUT/initramfs.cpio}" \
  -append "${VOLCTL_VM_APPEND:-console=ttyS0 panic=-1 cryptomgr.notests quiet loglevel=3}" \
  $SERIAL \
  -drive file="$DISK",format=raw,if=virtio,cache=unsafe \
  -drive file="$JOBIMG",format=raw,if=virtio,readonly=on \
  ${VOLCTL_VM_QEMU_EXTRA:-} > "$LOG" 2>&1
qrc=$?
set -e
if [ -n "${VOLCTL_VM_SERIAL_SOCKET:-}" ]; then
  cat "$LOG" >&2; rm -f "$LOG"; exit "$qrc"
fi
tr -d '\r' < "$LOG"
rc=$(tr -d '\r' < "$LOG" | sed -n 's/^VOLCTL-VM-EXIT \([0-9]*\)$/\1/p' | tail -1)
rm -f "$LOG"
if [ -z "$rc" ]; then
  [ "$qrc" = 124 ] && { echo "VM timed out after ${TIMEOUT}s" >&2; exit 124; }
  echo "VM ended without an exit marker (qemu exit $qrc)" >&2
  exit 125
fi
exit "$rc"
