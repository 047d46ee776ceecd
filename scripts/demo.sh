#!/usr/bin/env bash
# The built-in demo: a node's life in five boots of a qemu VM (Debian's
# kernel, real dm-crypt, mkfs and mount) on a disk image that holds only
# what an OS image ships: a GPT with META.
#
#   boot 1  volctl lays out STATE, EPHEMERAL and persistence in the free
#           space; STATE and persistence are encrypted and formatted;
#           EPHEMERAL starts plain, as on a node installed before encryption
#           was wanted. A new recovery key for persistence is staged.
#   boot 2  the staged config is promoted: the new key is enrolled.
#           Removing the old key is staged.
#   boot 3  the old key is removed (checked on the host with cryptsetup).
#           Encrypting EPHEMERAL is staged.
#   boot 4  EPHEMERAL holds data, so it waits for a wipe; `volctl reset` wipes it.
#   boot 5  EPHEMERAL is encrypted and formatted; persistence's data is intact.
set -euo pipefail
cd "$(dirname "$0")/.."
VOLCTL=${VOLCTL:-target/debug/volctl}
DIR=${DEMO_DIR:-target/demo}
rm -rf "$DIR" && mkdir -p "$DIR/job"
DISK=$DIR/disk.img
UUID=4c4c4544-0038-5910-8057-b4c04f4d3732

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "build the VM (Debian kernel, initramfs with volctl)"
tests/vm/setup.sh "$VOLCTL"

say "a 320 MiB disk image with one partition, META (as an OS image ships it)"
truncate -s 320M "$DISK"
sgdisk -n1:0:+1M -c1:META "$DISK" >/dev/null
sgdisk -p "$DISK" | sed -n '/^Number/,$p'

# Demo-sized KDF costs; real configs leave `pbkdf` out.
PBKDF='  pbkdf: {type: argon2id, memoryKiB: 8192, iterations: 4}'
config() { # $1: EPHEMERAL block; $2..: persistence keys
  local eph=$1; shift
  printf 'apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  provider: luks2\n%s\n  keys:\n    - slot: 0\n      nodeID: {}\n---\n' "$PBKDF"
  printf 'apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nprovisioning:\n  maxSize: 64MiB\n'
  if [ -n "$eph" ]; then printf '%s\n' "$eph"; fi
  printf -- '---\n'
  printf 'apiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n%s\n  keys:\n' "$PBKDF"
  for k in "$@"; do printf '    - %s\n' "$k"; done
}
PLAIN=''
ENCRYPTED=$(printf 'encryption:\n  provider: luks2\n%s\n  keys:\n    - slot: 0\n      nodeID: {}\n      lockToSTATE: true\n' "$PBKDF")
OLD='{slot: 0, static: {passphrase: old-recovery-passphrase}}'
NODE='{slot: 1, nodeID: {}, lockToSTATE: true}'
NEW='{slot: 2, static: {passphrase: new-recovery-passphrase}}'
config "$PLAIN" "$OLD" "$NODE" > "$DIR/job/v1.yaml"
config "$PLAIN" "$OLD" "$NODE" "$NEW" > "$DIR/job/v2.yaml"
config "$PLAIN" "$NODE" "$NEW" > "$DIR/job/v3.yaml"
config "$ENCRYPTED" "$NODE" "$NEW" > "$DIR/job/v4.yaml"
for v in v1 v2 v3 v4; do # each is a whole config; say more only if one is invalid
  $VOLCTL validate -f "$DIR/job/$v.yaml" >/dev/null 2>&1 || { $VOLCTL validate -f "$DIR/job/$v.yaml"; exit 1; }
done

boot() { # $1: title, $2: shell run inside the VM
  say "$1"
  printf '%s\n' "$2" > "$DIR/job/job.sh"
  local rc=0
  VOLCTL_VM_QEMU_EXTRA="-uuid $UUID" tests/vm/run.sh "$DISK" "$DIR/job" 240 > "$DIR/serial.log" || rc=$?
  awk '/VOLCTL-VM-EXIT/ {p=0} p {print "  | " $0} /VOLCTL-VM-START/ {p=1}' "$DIR/serial.log"
  if [ "$rc" != 0 ]; then echo "the VM job failed (exit $rc); serial log: $DIR/serial.log"; exit 1; fi
}

check_old_key_gone() {
  local n start end loop
  n=$(sgdisk -p "$DISK" | awk '$NF=="persistence" {print $1}')
  read -r start end < <(sgdisk -i "$n" "$DISK" | awk '/First sector/ {s=$3} /Last sector/ {e=$3} END {print s, e}')
  loop=$(losetup -f --show -o $((start * 512)) --sizelimit $(((end - start + 1) * 512)) "$DISK")
  trap 'losetup -d "$loop" 2>/dev/null || true' RETURN
  if printf old-recovery-passphrase | cryptsetup open --test-passphrase --key-file - "$loop" 2>/dev/null; then
    echo "FAIL: the old recovery passphrase still opens persistence"; exit 1
  fi
  printf new-recovery-passphrase | cryptsetup open --test-passphrase --key-file - --key-slot 2 "$loop"
  echo "  host check (cryptsetup): old recovery passphrase refused, new one opens slot 2"
}

boot "boot 1: META only, config given at boot (-f): volctl lays out the disk" '
volctl boot --disk /dev/vda -f /job/v1.yaml
volctl status -o json | sed -n "/partitions_created/,/]/p" | grep "create" | sed "s/^ *\"\(.*\)\",*$/laid out: \1/"
echo "ephemeral data" > /var/data; echo "persistent data" > /persistence/data
echo "$ volctl apply-config -f v2.yaml --mode staged    # add a new recovery key in slot 2"
volctl apply-config -f /job/v2.yaml --mode staged
volctl close >/dev/null'

boot "boot 2: the staged config is promoted; slot 2 is enrolled" '
volctl boot --disk /dev/vda
volctl status -o json | grep -A3 "\"changes\"" | grep "slot" | sed "s/^ */changes: /"
echo "$ volctl apply-config -f v3.yaml --mode staged    # drop the old key in slot 0"
volctl apply-config -f /job/v3.yaml --mode staged
volctl close >/dev/null'

boot "boot 3: the old key is removed" '
volctl boot --disk /dev/vda
volctl status -o json | grep -A3 "\"changes\"" | grep "slot" | sed "s/^ */changes: /"
echo "$ cat /persistence/data"; cat /persistence/data
echo "$ volctl apply-config -f v4.yaml --mode no-reboot    # encrypt EPHEMERAL: refused, it needs a wipe"
volctl apply-config -f /job/v4.yaml --mode no-reboot 2>&1 | head -2
echo "$ volctl apply-config -f v4.yaml --mode staged"
volctl apply-config -f /job/v4.yaml --mode staged
volctl close >/dev/null'
check_old_key_gone
say "the disk as volctl laid it out"
sgdisk -p "$DISK" | sed -n '/^Number/,$p'

boot "boot 4: EPHEMERAL holds data, so it waits for a wipe" '
volctl boot --disk /dev/vda
echo "$ volctl reset --system-labels-to-wipe EPHEMERAL"
volctl reset --system-labels-to-wipe EPHEMERAL
volctl close >/dev/null'

boot "boot 5: EPHEMERAL is encrypted; everything is ready" '
volctl boot --disk /dev/vda; rc=$?
echo "$ cat /persistence/data"; cat /persistence/data
echo "$ ls /var"; ls /var
volctl close >/dev/null
[ $rc = 0 ] && echo "demo: all volumes ready"'

say "demo finished"
