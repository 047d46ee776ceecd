#!/usr/bin/env bash
# Builds the VM suite's real Debian (the `debian-systemd` scenario): a
# Debian 12 root made by mmdebstrap (cached under target/vm per package
# list), the volctl package installed in it with `dpkg -i`, the scenario's
# config, the units of tests/vm/debian/ (a stand-in for an appliance's web
# UI ordered after the persistence volume, and the unit that runs the
# harness's job after multi-user.target and powers off), the modules of the
# suite's kernel (target/vm/kernel), and two initramfs images made by
# `update-initramfs` inside it: one where volctl's hook does nothing (the
# volumes are opened by systemd's volctl-boot.service) and one with it on
# (VOLCTL_INITRAMFS=yes: opened before switch_root).
#
# Usage: tests/vm/debian-systemd.sh OUT DEB CONFIG
# Writes OUT/root.img (ext4, labelled debroot), OUT/initrd-systemd.img and
# OUT/initrd-volctl.img.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VM=$ROOT/target/vm
OUT=${1:?usage: debian-systemd.sh OUT DEB CONFIG}
DEB=$(readlink -f "${2:?usage: debian-systemd.sh OUT DEB CONFIG}")
CONFIG=$(readlink -f "${3:?usage: debian-systemd.sh OUT DEB CONFIG}")
mkdir -p "$OUT"

include=systemd,systemd-sysv,udev,kmod,initramfs-tools,zstd,libcryptsetup12,libtss2-esys-3.0.2-0,libtss2-mu0,libtss2-tctildr0,e2fsprogs
base=$VM/debian-bookworm-systemd-$(echo "$include" | sha256sum | cut -c1-12).tar
if [ ! -f "$base" ]; then
	mmdebstrap --quiet --variant=minbase --include="$include" \
		bookworm "${base%.tar}.part.tar" http://deb.debian.org/debian
	mv "${base%.tar}.part.tar" "$base"
fi

work=$(mktemp -d)
r=$work/root
cleanup() {
	for m in dev/pts dev proc sys; do umount "$r/$m" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$r" && tar -C "$r" -xf "$base"

# The suite's kernel: its modules for the boot's needs (disks, dm-crypt,
# filesystems, crypto), its config for mkinitramfs.
KVER=$(ls "$VM/kernel/lib/modules")
src=$VM/kernel/lib/modules/$KVER
dst=$r/lib/modules/$KVER
mkdir -p "$dst/kernel/drivers"
cp -a "$src"/modules.order "$src"/modules.builtin "$src"/modules.builtin.modinfo "$dst/"
cp -a "$src"/kernel/{arch,crypto,lib,fs} "$dst/kernel/"
cp -a "$src"/kernel/drivers/{md,virtio,block,char,tty} "$dst/kernel/drivers/"
cp "$VM/kernel/boot/config-$KVER" "$VM/kernel/boot/System.map-$KVER" "$r/boot/"

for m in proc sys dev dev/pts; do mkdir -p "$r/$m"; done
mount -t proc proc "$r/proc"
mount -t sysfs sys "$r/sys"
mount --bind /dev "$r/dev"
mount --bind /dev/pts "$r/dev/pts"
chroot "$r" depmod "$KVER"

cp "$DEB" "$r/tmp/volctl.deb"
chroot "$r" dpkg -i /tmp/volctl.deb >/dev/null
rm "$r/tmp/volctl.deb"
install -m 0600 "$CONFIG" "$r/etc/volctl/config.yaml"

here=$ROOT/tests/vm/debian
install -m 0644 "$here/webui.service" "$here/e2e-report.service" "$r/etc/systemd/system/"
install -m 0755 "$here/e2e-report" "$r/usr/local/sbin/e2e-report"
chroot "$r" systemctl enable webui.service e2e-report.service >/dev/null 2>&1
# The console is the harness's: no login prompt on it.
chroot "$r" systemctl mask serial-getty@ttyS0.service >/dev/null 2>&1
echo "LABEL=debroot / ext4 rw 0 0" > "$r/etc/fstab"
echo debian-vm > "$r/etc/hostname"

# Two initramfs images of the same root: volctl's hook off, then on.
echo "COMPRESS=zstd" > "$r/etc/initramfs-tools/conf.d/compress"
chroot "$r" update-initramfs -c -k "$KVER" >/dev/null 2>&1
cp "$r/boot/initrd.img-$KVER" "$OUT/initrd-systemd.img"
echo "VOLCTL_INITRAMFS=yes" > "$r/etc/default/volctl"
chroot "$r" update-initramfs -u -k "$KVER" >/dev/null 2>&1
cp "$r/boot/initrd.img-$KVER" "$OUT/initrd-volctl.img"
stat -c '%a %n' "$r/boot/initrd.img-$KVER" > "$OUT/initrd.mode"

for m in dev/pts dev proc sys; do umount "$r/$m"; done
size=$(( $(du -sm "$r" | cut -f1) + 256 ))
rm -f "$OUT/root.img"
mke2fs -q -t ext4 -L debroot -d "$r" "$OUT/root.img" "${size}M"
