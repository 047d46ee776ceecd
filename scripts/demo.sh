#!/usr/bin/env bash
# The built-in demo, told from the admin's side: a node's life in five boots
# of a qemu VM (Debian's kernel, real dm-crypt, mkfs and mount) on a disk
# image that holds only what an OS image ships: a GPT with META, and a
# config. Every step after the first boot is a `volctl -n NODE …` command
# run on this host, over the node API (qemu forwards 127.0.0.1:$PORT to the
# guest's port 50000); a reboot is a real power-off and a new VM run.
#
#   boot 1  volctl lays out STATE, EPHEMERAL and persistence from the image's
#           config; STATE and persistence are encrypted, EPHEMERAL starts
#           plain. The admin adds a new recovery passphrase (--mode reboot).
#   boot 2  slot 2 is enrolled; the admin removes the old key (--mode reboot).
#   boot 3  the old key is gone (checked on the host with cryptsetup). The
#           admin stages encrypting EPHEMERAL and wipes it (reset --reboot).
#   boot 4  EPHEMERAL is encrypted. The admin wipes STATE and EPHEMERAL
#           (whose key is locked to STATE) with reset --reboot.
#   boot 5  no config: maintenance mode on the network; the admin pins the
#           node's certificate fingerprint and hands it the config; the new
#           STATE's salt re-enrols persistence's lockToSTATE key.
set -euo pipefail
cd "$(dirname "$0")/.."
VOLCTL=${VOLCTL:-target/debug/volctl}
VOLCTL=$(realpath "$VOLCTL")
DIR=${DEMO_DIR:-target/demo}
PORT=${DEMO_PORT:-50077}
rm -rf "$DIR" && mkdir -p "$DIR/job/api"
DISK=$DIR/disk.img
UUID=4c4c4544-0038-5910-8057-b4c04f4d3732
NODE=127.0.0.1:$PORT
export VOLCTLCONFIG=$DIR/pki/admin.volctlconfig

# A VM left waiting (the demo stopped half-way) is stopped with it.
trap 'pkill -f "file=$DISK," 2>/dev/null || true' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$VOLCTL|volctl|; s|$DIR/||g"; "$@"; }

say "build the VM (Debian kernel, initramfs with volctl)"
tests/vm/setup.sh "$VOLCTL"

say "a 320 MiB disk image with one partition, META (as an OS image ships it)"
truncate -s 320M "$DISK"
sgdisk -n1:0:+1M -c1:META "$DISK" >/dev/null
sgdisk -p "$DISK" | sed -n '/^Number/,$p'

say "the admin's PKI: a CA, the node's certificate (it goes on STATE), admin and reader client configs"
run "$VOLCTL" gen --out "$DIR/pki" --san 127.0.0.1
cp "$DIR/pki/ca.crt" "$DIR/pki/server.crt" "$DIR/pki/server.key" "$DIR/job/api/"

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
NODEKEY='{slot: 1, nodeID: {}, lockToSTATE: true}'
NEW='{slot: 2, static: {passphrase: new-recovery-passphrase}}'
config "$PLAIN" "$OLD" "$NODEKEY" > "$DIR/job/v1.yaml"
config "$PLAIN" "$OLD" "$NODEKEY" "$NEW" > "$DIR/v2.yaml"
config "$PLAIN" "$NODEKEY" "$NEW" > "$DIR/v3.yaml"
config "$ENCRYPTED" "$NODEKEY" "$NEW" > "$DIR/v4.yaml"
for v in job/v1 v2 v3 v4; do # each is a whole config; say more only if one is invalid
  "$VOLCTL" validate -f "$DIR/$v.yaml" >/dev/null 2>&1 || { "$VOLCTL" validate -f "$DIR/$v.yaml"; exit 1; }
done

# The node: boot (the image's config on the very first boot only), keep the
# API's certificate on STATE, serve until a reboot is asked for.
cat > "$DIR/job/job.sh" <<'JOB'
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0
volctl boot --disk /dev/vda $(cat /job/boot-args) > /tmp/boot.out 2>&1; cat /tmp/boot.out
api=/var/lib/volctl/state/api
if [ -d /var/lib/volctl/state ]; then
  mkdir -p $api; for f in ca.crt server.crt server.key; do [ -e $api/$f ] || cp /job/api/$f $api/; done; chmod 600 $api/server.key
fi
if grep -q ' /persistence ' /proc/mounts; then
  [ -e /persistence/data ] || echo "persistent data, written at the first boot" > /persistence/data
  echo "node: /persistence/data holds: $(cat /persistence/data)"
fi
volctl serve --disk /dev/vda --reboot-command 'touch /tmp/reboot' > /tmp/serve.out 2>&1 &
while [ ! -e /tmp/reboot ]; do sleep 0.1; done
sleep 0.3; kill %1; volctl close >/dev/null 2>&1; exit 0
JOB

BOOT=0
VM_PID=
vm_start() { # boots the VM in the background; its console goes to serial-N.log
  BOOT=$((BOOT + 1))
  say "boot $BOOT: $1"
  VOLCTL_VM_QEMU_EXTRA="-uuid $UUID -netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$PORT-:50000 -device virtio-net-pci,netdev=n0,romfile=" \
    tests/vm/run.sh "$DISK" "$DIR/job" 240 > "$DIR/serial-$BOOT.log" 2>&1 &
  VM_PID=$!
}
vm_wait() { # waits for the power-off; shows what the node printed
  local rc=0
  wait "$VM_PID" || rc=$?
  awk '/VOLCTL-VM-EXIT/ {p=0} p {print "  | " $0} /VOLCTL-VM-START/ {p=1}' "$DIR/serial-$BOOT.log" | grep -v '^  | $' || true
  if [ "$rc" != 0 ]; then echo "the VM failed (exit $rc); serial log: $DIR/serial-$BOOT.log"; exit 1; fi
}
until_up() { # waits until the node API answers `$@`
  local i
  for i in $(seq 1 300); do "$VOLCTL" -n "$NODE" "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "the node did not answer"; exit 1
}
reboot_and_wait() { run "$VOLCTL" -n "$NODE" "$@"; vm_wait; }

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

echo "-f /job/v1.yaml" > "$DIR/job/boot-args" # the image's config, first boot only
vm_start "the image's config (-f): volctl lays out the disk"
until_up version
: > "$DIR/job/boot-args"
run "$VOLCTL" -n "$NODE" status
reboot_and_wait apply-config -f "$DIR/v2.yaml" --mode reboot

vm_start "the new recovery passphrase is enrolled in slot 2"
until_up version
run "$VOLCTL" -n "$NODE" status
reboot_and_wait apply-config -f "$DIR/v3.yaml" --mode reboot

vm_start "the old key is removed"
until_up version
run "$VOLCTL" -n "$NODE" status
check_old_key_gone
run "$VOLCTL" -n "$NODE" apply-config -f "$DIR/v4.yaml" --mode no-reboot || echo "  (refused, as it should be: EPHEMERAL holds data)"
run "$VOLCTL" -n "$NODE" apply-config -f "$DIR/v4.yaml" --mode staged
reboot_and_wait reset --system-labels-to-wipe EPHEMERAL --reboot

vm_start "EPHEMERAL is encrypted; now STATE (and EPHEMERAL, whose key is locked to it) is wiped"
until_up version
run "$VOLCTL" -n "$NODE" status
say "a reader may look, not change"
VOLCTLCONFIG=$DIR/pki/reader.volctlconfig run "$VOLCTL" -n "$NODE" reboot || true
reboot_and_wait reset --system-labels-to-wipe STATE,EPHEMERAL --reboot

vm_start "no config on the blank STATE: maintenance mode, over the network"
for i in $(seq 1 300); do
  out=$("$VOLCTL" -n "$NODE" apply-config --insecure --dry-run -f "$DIR/v4.yaml" 2>&1) && break; sleep 0.5
done
FP=$(printf "%s\n" "$out" | grep -o "SHA-256 fingerprint [0-9a-f]*" | head -1 | cut -d" " -f3)
echo "  the node's certificate fingerprint, as its console shows it: $FP"
run "$VOLCTL" -n "$NODE" apply-config --insecure --fingerprint "$FP" -f "$DIR/v4.yaml"
until_up version
run "$VOLCTL" -n "$NODE" status
STATUS=$("$VOLCTL" -n "$NODE" status -o json)
reboot_and_wait reboot
grep -q "fingerprint $FP" "$DIR/serial-$BOOT.log" && echo "  the console showed the same fingerprint the admin pinned"
if printf '%s' "$STATUS" | grep '"phase"' | grep -qv '"ready"'; then echo "demo: some volume is not ready"; exit 1; fi
say "demo finished: all volumes ready, every step driven from the host"
