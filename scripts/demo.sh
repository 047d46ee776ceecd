#!/usr/bin/env bash
# The built-in demo: a disk image with GPT partitions META, STATE, EPHEMERAL
# and persistence; volctl validates the appliance config, shows its plan,
# formats and converges each encrypted partition, then rotates a key.
# Partitions are attached as loop devices by offset and always detached.
set -euo pipefail
cd "$(dirname "$0")/.."
VOLCTL=${VOLCTL:-target/debug/volctl}
DIR=${DEMO_DIR:-target/demo}
rm -rf "$DIR" && mkdir -p "$DIR"
DISK=$DIR/disk.img
LOOPS=()
cleanup() { for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done; }
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

export VOLCTL_NODE_UUID=4c4c4544-0038-5910-8057-b4c04f4d3732
# Demo-sized KDF costs; real configs leave pbkdf out and get libcryptsetup's.
cat > "$DIR/appliance.yaml" <<'YAML'
apiVersion: v1alpha1
kind: VolumeConfig
name: STATE
encryption:
  pbkdf: {type: argon2id, memoryKiB: 8192, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
---
apiVersion: v1alpha1
kind: VolumeConfig
name: EPHEMERAL
encryption:
  pbkdf: {type: argon2id, memoryKiB: 8192, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
      lockToSTATE: true
    - slot: 1
      static:
        passphrase: old-recovery-passphrase
---
apiVersion: v1alpha1
kind: VolumeConfig
name: persistence
encryption:
  pbkdf: {type: argon2id, memoryKiB: 8192, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
      lockToSTATE: true
    - slot: 1
      static:
        passphrase: appliance-recovery-passphrase
YAML
# Rotation: add a new recovery passphrase in slot 2, then drop slot 1.
python3 - "$DIR" <<'PY'
import sys
d = sys.argv[1]
s = open(f"{d}/appliance.yaml").read()
new = "    - slot: 2\n      static:\n        passphrase: new-recovery-passphrase\n"
old = "    - slot: 1\n      static:\n        passphrase: old-recovery-passphrase\n"
open(f"{d}/rotate-1.yaml", "w").write(s.replace(old, old + new))
open(f"{d}/rotate-2.yaml", "w").write(s.replace(old, new))
PY

say "make a 256 MiB disk image with GPT partitions"
truncate -s 256M "$DISK"
sgdisk -n1:0:+1M -c1:META -n2:0:+64M -c2:STATE -n3:0:+64M -c3:EPHEMERAL -n4:0:0 -c4:persistence "$DISK" >/dev/null
sgdisk -p "$DISK" | sed -n '/^Number/,$p'

attach() { # label -> loop device for that partition
  local n start end
  n=$(sgdisk -p "$DISK" | awk -v l="$1" '$NF==l {print $1}')
  read -r start end < <(sgdisk -i "$n" "$DISK" | awk '/First sector/ {s=$3} /Last sector/ {e=$3} END {print s, e}')
  losetup -f --show -o $((start * 512)) --sizelimit $(((end - start + 1) * 512)) "$DISK"
}

say "volctl validate"
$VOLCTL validate -f "$DIR/appliance.yaml"

head -c 32 /dev/urandom > "$DIR/state-salt" && chmod 600 "$DIR/state-salt"
declare -A DEV
for v in STATE EPHEMERAL persistence; do DEV[$v]=$(attach "$v"); LOOPS+=("${DEV[$v]}"); done

for v in STATE EPHEMERAL persistence; do
  say "volctl plan --volume $v (dry run: blank partition)"
  $VOLCTL plan --volume "$v" --device "${DEV[$v]}" -f "$DIR/appliance.yaml" --state-salt-file "$DIR/state-salt"
  say "volctl converge --volume $v"
  $VOLCTL converge --volume "$v" --device "${DEV[$v]}" -f "$DIR/appliance.yaml" --state-salt-file "$DIR/state-salt"
done

say "second run: everything converged, one KDF run per volume"
for v in STATE EPHEMERAL persistence; do
  $VOLCTL converge --volume "$v" --device "${DEV[$v]}" -f "$DIR/appliance.yaml" --state-salt-file "$DIR/state-salt"
done

say "rotate EPHEMERAL's recovery passphrase, step 1: add slot 2"
$VOLCTL converge --volume EPHEMERAL --device "${DEV[EPHEMERAL]}" -f "$DIR/rotate-1.yaml" --state-salt-file "$DIR/state-salt"
say "step 2: remove slot 1"
$VOLCTL converge --volume EPHEMERAL --device "${DEV[EPHEMERAL]}" -f "$DIR/rotate-2.yaml" --state-salt-file "$DIR/state-salt"

say "check with cryptsetup: the old passphrase no longer opens, the new one does"
if printf old-recovery-passphrase | cryptsetup open --test-passphrase --key-file - "${DEV[EPHEMERAL]}" 2>/dev/null; then
  echo "FAIL: old passphrase still opens EPHEMERAL"; exit 1
fi
printf new-recovery-passphrase | cryptsetup open --test-passphrase --key-file - --key-slot 2 "${DEV[EPHEMERAL]}"
echo "old passphrase refused, new passphrase accepted (slot 2)"
cryptsetup luksDump "${DEV[EPHEMERAL]}" | sed -n '/^Keyslots:/,/^Digests:/p' | grep -E '^\s+[0-9]+: '
say "demo finished"
