#!/usr/bin/env bash
# Decryption-in-place throughput, side by side with its anchor: the same
# encrypted image (SIZE MiB of ext4, half full of random data, encrypted
# in place by volctl: its data 16 MiB into the device) decrypted by
# `volctl disable-encryption` and by `cryptsetup reencrypt --decrypt
# --header FILE` (both: the header exported to a file, datashift-checksum
# resilience, offline, an image file). Each timed from start to finish
# (header exported, every byte, header file left or removed).
#
# Usage: scripts/bench-decrypt.sh [SIZE_MIB] [ROUNDS]
set -euo pipefail
SIZE=${1:-1024}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VOLCTL=${VOLCTL:-$ROOT/target/debug/volctl}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir "$W/tree"
for i in $(seq 1 $((SIZE / 2 / 32))); do head -c 32M /dev/urandom > "$W/tree/f$i"; done
truncate -s "${SIZE}M" "$W/base.img"
mkfs.ext4 -q -F -b 4096 -d "$W/tree" "$W/base.img" "$((SIZE - 32))M"
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
"$VOLCTL" converge --volume EPHEMERAL --device "$W/base.img" -f "$W/config.yaml" >/dev/null 2>&1
data=$((SIZE - 16))
secs() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
printf '%-6s %-34s %8s %10s\n' round tool ms MiB/s
best_c=0; best_v=0
for r in $(seq 1 "$ROUNDS"); do
  cp --sparse=always "$W/base.img" "$W/c.img"; cp --sparse=always "$W/base.img" "$W/v.img"; sync
  rm -rf "$W/c.hdr" "$W/headers"
  c=$(secs cryptsetup reencrypt --decrypt --header "$W/c.hdr" --force-offline-reencrypt --key-file "$W/key" -q "$W/c.img")
  v=$(secs "$VOLCTL" disable-encryption --volume EPHEMERAL --device "$W/v.img" -f "$W/config.yaml" --header-dir "$W/headers")
  if cryptsetup isLuks "$W/c.img" || cryptsetup isLuks "$W/v.img" || ! e2fsck -fn "$W/v.img" >/dev/null 2>&1; then
    echo "an image was not decrypted" >&2; exit 1
  fi
  cr=$((data * 1000 / (c > 0 ? c : 1))); vr=$((data * 1000 / (v > 0 ? v : 1)))
  printf '%-6s %-34s %8s %10s\n' "$r" "cryptsetup reencrypt --decrypt" "$c" "$cr" "$r" "volctl disable-encryption" "$v" "$vr"
  [ "$cr" -gt "$best_c" ] && best_c=$cr; [ "$vr" -gt "$best_v" ] && best_v=$vr
done
echo "best of $ROUNDS, ${data} MiB: volctl ${best_v} MiB/s, cryptsetup ${best_c} MiB/s, ratio $(awk "BEGIN{printf \"%.2f\", $best_v/$best_c}")"
