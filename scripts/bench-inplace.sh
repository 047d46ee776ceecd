#!/usr/bin/env bash
# In-place encryption (and decryption) throughput, side by side with its
# anchor: the same image (SIZE MiB, holding FS — ext4 by default, btrfs or
# xfs — that leaves the 32 MiB LUKS2 needs, half full of random data)
# encrypted by `volctl converge` with `inPlace: true` and by `cryptsetup
# reencrypt --encrypt --reduce-device-size 32M` (both: datashift
# resilience, offline, an image file). With OP=decrypt, the image
# encrypted in place by volctl first is decrypted by `volctl
# disable-encryption` and by `cryptsetup reencrypt --decrypt --header FILE`
# (both: the header exported to a file, datashift-checksum resilience).
# Each timed from start to finish (header, keyslots, every byte).
#
# Usage: [FS=ext4|btrfs|xfs] [OP=encrypt|decrypt] scripts/bench-inplace.sh [SIZE_MIB] [ROUNDS]
set -euo pipefail
SIZE=${1:-1024}
ROUNDS=${2:-3}
FS=${FS:-ext4}
OP=${OP:-encrypt}
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
secs() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
case "$OP" in
  encrypt)
    data=$((SIZE - 32))
    anchor="cryptsetup reencrypt --encrypt"; ours="volctl converge (inPlace)"
    run_anchor() { cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32M --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$W/key" -q "$W/c.img"; }
    run_ours() { "$VOLCTL" converge --volume EPHEMERAL --device "$W/v.img" -f "$W/config.yaml"; }
    done_right() { cryptsetup isLuks "$1"; } ;;
  decrypt)
    "$VOLCTL" converge --volume EPHEMERAL --device "$W/base.img" -f "$W/config.yaml" >/dev/null 2>&1
    data=$((SIZE - 16))
    anchor="cryptsetup reencrypt --decrypt"; ours="volctl disable-encryption"
    run_anchor() { rm -f "$W/c.hdr"; cryptsetup reencrypt --decrypt --header "$W/c.hdr" --force-offline-reencrypt --key-file "$W/key" -q "$W/c.img"; }
    run_ours() { rm -rf "$W/headers"; "$VOLCTL" disable-encryption --volume EPHEMERAL --device "$W/v.img" -f "$W/config.yaml" --header-dir "$W/headers"; }
    done_right() { ! cryptsetup isLuks "$1" && blkid "$1" >/dev/null; } ;;
  *) echo "OP is encrypt or decrypt" >&2; exit 2 ;;
esac
printf '%-6s %-34s %8s %10s\n' round tool ms MiB/s
best_c=0; best_v=0
for r in $(seq 1 "$ROUNDS"); do
  cp --sparse=always "$W/base.img" "$W/c.img"; cp --sparse=always "$W/base.img" "$W/v.img"; sync
  c=$(secs run_anchor)
  v=$(secs run_ours)
  done_right "$W/c.img" && done_right "$W/v.img" || { echo "an image was not ${OP}ed" >&2; exit 1; }
  cr=$((data * 1000 / (c > 0 ? c : 1))); vr=$((data * 1000 / (v > 0 ? v : 1)))
  printf '%-6s %-34s %8s %10s\n' "$r" "$anchor" "$c" "$cr" "$r" "$ours" "$v" "$vr"
  [ "$cr" -gt "$best_c" ] && best_c=$cr; [ "$vr" -gt "$best_v" ] && best_v=$vr
done
echo "best of $ROUNDS, ${data} MiB of $FS, $OP: volctl ${best_v} MiB/s, cryptsetup ${best_c} MiB/s, ratio $(awk "BEGIN{printf \"%.2f\", $best_v/$best_c}")"
