#!/usr/bin/env bash
# Builds what the VM suite boots: Debian's kernel (cached under target/vm),
# its uncompressed vmlinux (booting it skips ≈ 6 s of decompression under
# TCG), and an uncompressed initramfs with busybox, volctl and the libraries
# it needs, mkfs.ext4 and mkfs.xfs, cryptsetup and dmsetup, the write-cutting
# injector, and the kernel modules for loop devices, virtio (disk and
# network), dm-crypt, ext4, xfs and btrfs (with the btrfs tool).
#
# Usage: tests/vm/setup.sh VOLCTL_BINARY   (prints nothing on success but the paths)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/target/vm
VOLCTL=$(readlink -f "${1:?usage: setup.sh VOLCTL_BINARY}")
mkdir -p "$OUT"
cd "$OUT"

# The kernel package name changes with security updates: resolve it now.
if [ ! -f kernel.name ] || [ ! -d kernel/boot ]; then
  PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$PKG" ] || { apt-get update -qq; PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'); }
  [ -n "$PKG" ] || { echo "cannot resolve the Debian kernel package" >&2; exit 1; }
  rm -rf kernel ./*.deb
  apt-get download "$PKG" >/dev/null 2>&1 || apt-get download "$PKG"
  mkdir kernel && dpkg -x "$PKG"_*.deb kernel
  rm -f "$PKG"_*.deb
  echo "$PKG" > kernel.name
fi
KVER=$(ls kernel/lib/modules)

# vmlinux: the xz payload of the bzImage, found by its magic.
if [ ! -f vmlinux ]; then
  python3 - kernel/boot/vmlinuz-"$KVER" vmlinux <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
magic = b"\xfd7zXZ\x00"
at = data.find(magic)
while at != -1:
    try:
        out = lzma.LZMADecompressor().decompress(data[at:])
        if out[:4] == b"\x7fELF":
            open(sys.argv[2], "wb").write(out)
            sys.exit(0)
    except lzma.LZMAError:
        pass
    at = data.find(magic, at + 1)
sys.exit("no xz-compressed ELF kernel found")
PY
fi

MODULES="loop af_alg algif_skcipher cryptd crypto_simd aesni-intel virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk failover net_failover virtio_net dm-mod dm-crypt ecb xts crc32c_generic crc16 mbcache jbd2 ext4 libcrc32c xfs xor raid6_pq zstd_compress btrfs"
rm -rf initramfs && mkdir -p initramfs/{bin,sbin,etc,proc,sys,dev,run,tmp,job,lib/modules,var,mnt}
cp /bin/busybox initramfs/bin/busybox
for m in $MODULES; do
  f=$(find kernel/lib/modules/"$KVER" -name "$m.ko" | head -1)
  [ -n "$f" ] && cp "$f" initramfs/lib/modules/
done
echo "$MODULES" > initramfs/lib/modules/order

copy_with_libs() { # binary destination
  install -D -m 0755 "$1" "initramfs$2"
  ldd "$1" | awk '/=>/ {print $3} /^\s*\/lib/ {print $1}' | while read -r lib; do
    [ -n "$lib" ] && [ -f "$lib" ] && install -D -m 0755 "$(readlink -f "$lib")" "initramfs$lib"
  done
}
strip -o "$OUT/volctl.stripped" "$VOLCTL"
copy_with_libs "$OUT/volctl.stripped" /bin/volctl
copy_with_libs /sbin/mke2fs /sbin/mke2fs
ln -sf mke2fs initramfs/sbin/mkfs.ext4
copy_with_libs "$(command -v mkfs.xfs)" /sbin/mkfs.xfs
copy_with_libs "$(command -v xfs_growfs)" /sbin/xfs_growfs
copy_with_libs "$(command -v resize2fs)" /sbin/resize2fs
copy_with_libs "$(command -v e2fsck)" /sbin/e2fsck
# btrfs in place: min-dev-size and the shrink.
copy_with_libs "$(command -v btrfs)" /sbin/btrfs
# The CLI checks of a volume (outside volctl) and the clean-up after a
# simulated power cut (dm devices a killed online run left behind).
copy_with_libs "$(command -v cryptsetup)" /sbin/cryptsetup
copy_with_libs "$(command -v dmsetup)" /sbin/dmsetup
# The write-cutting injector (a test double for a power cut), for the
# every-write sweep of the online run.
cc -shared -fPIC -O2 -o initramfs/lib/cut_writes.so "$ROOT/controller/tests/fault/cut_writes.c" -ldl
cp /etc/mke2fs.conf initramfs/etc/ 2>/dev/null || true
# Loaded at run time by libtss2-tctildr, so not listed by ldd: the TPM device TCTI.
for t in /lib/x86_64-linux-gnu/libtss2-tcti-device.so.0 /usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0; do
  [ -e "$t" ] && install -D -m 0644 "$(readlink -f "$t")" "initramfs$t"
done
# Not listed by ldd, but needed: the loader, and libgcc_s for unwinding.
install -D -m 0755 /lib64/ld-linux-x86-64.so.2 initramfs/lib64/ld-linux-x86-64.so.2
for g in /lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1; do
  [ -f "$g" ] && install -D -m 0644 "$g" "initramfs$g"
done
install -m 0755 "$ROOT/tests/vm/init" initramfs/init
(cd initramfs && find . | cpio -o -H newc --quiet) > initramfs.cpio
# Done: $OUT/vmlinux and $OUT/initramfs.cpio.
