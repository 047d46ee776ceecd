#!/usr/bin/env bash
# In-place encryption throughput, side by side with its anchor: the same
# image (SIZE MiB, holding FS — ext4 by default, btrfs or xfs — that leaves
# the 32 MiB LUKS2 needs,
# half full of random data) encrypted by `volctl converge` with
# `inPlace: true` and by `cryptsetup reencrypt --encrypt
# --reduce-device-size 32M` (both: datashift resilience, offline, an image
# file). Each timed from start to finish (header, keyslots, every byte).
#
# Usage: [FS=ext4|btrfs|xfs] scripts/bench-inplace.sh [SIZE_MIB] [ROUNDS]
set -euo pipefail
SIZE=${1:-1024}
ROUNDS=${2:-3}
FS=${FS:-ext4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VOLCTL=${VOLCTL:-$ROOT/target/debug/volctl}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir "$W/tree"
for i in $(seq 1 $((SIZE / 2 / 32))); do head -c 32M /dev/urandom > "$W/tree/f$i"; done
truncate -s "${SIZE}M" "$W/base.img"
case "$FS" in
  ext4) mkfs.ext4 -q -F -b 4096 -d "$W/tree" "$W/base.img" "$((SIZE - 32))M" ;;
  btrfs) mkfs.btrfs -q -b "$((SIZE - 32))M" --rootdir "$W/tree" "$W/base.img" ;;
  xfs)
    mkfs.xfs -q -f -d size="$((SIZE - 32))m" "$W/base.img"
    mkdir "$W/mnt" && mount -o loop "$W/base.img" "$W/mnt" && cp -a "$W/tree/." "$W/mnt" && umount "$W/mnt" ;;
  *) echo "FS is ext4, btrfs or xfs" >&2; exit 2 ;;
esac
printf 'bench-pass' > "$W/key"
cat > "$W/config.yaml" <<YAML
apiVersion: v1alpha1
kind: VolumeConfig
name: EPHEMERAL
encryption:
  provider: luks2
  inPlace: true
  pbkdf: {type: pbkdf2, iterations: 1000}
  keys:
    - slot: 0
      static: {passphrase: bench-pass}
YAML
data=$((SIZE - 32))
secs() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
printf '%-6s %-34s %8s %10s\n' round tool ms MiB/s
best_c=0; best_v=0
for r in $(seq 1 "$ROUNDS"); do
  cp --sparse=always "$W/base.img" "$W/c.img"; cp --sparse=always "$W/base.img" "$W/v.img"; sync
  c=$(secs cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32M --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$W/key" -q "$W/c.img")
  v=$(secs "$VOLCTL" converge --volume EPHEMERAL --device "$W/v.img" -f "$W/config.yaml")
  cryptsetup isLuks "$W/c.img" && cryptsetup isLuks "$W/v.img" || { echo "an image was not encrypted" >&2; exit 1; }
  cr=$((data * 1000 / (c > 0 ? c : 1))); vr=$((data * 1000 / (v > 0 ? v : 1)))
  printf '%-6s %-34s %8s %10s\n' "$r" "cryptsetup reencrypt --encrypt" "$c" "$cr" "$r" "volctl converge (inPlace)" "$v" "$vr"
  [ "$cr" -gt "$best_c" ] && best_c=$cr; [ "$vr" -gt "$best_v" ] && best_v=$vr
done
echo "best of $ROUNDS, ${data} MiB of $FS: volctl ${best_v} MiB/s, cryptsetup ${best_c} MiB/s, ratio $(awk "BEGIN{printf \"%.2f\", $best_v/$best_c}")"
