#!/bin/bash
# Checks the Debian package `make deb` wrote, with the tools Debian uses:
# its contents (the paths docs/installing.md names), lintian, systemd's
# own `systemd-analyze verify` of every unit, `man -l` of every page,
# bash/zsh/fish reading their completions; then installs, upgrades and
# purges it in a Debian 12 chroot made by mmdebstrap (cached under
# target/vm), and checks nothing is left behind and no volume was touched.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=$(ls target/debian/volctl_*_amd64.deb | tail -1)
work=$(mktemp -d)
cleanup() {
	umount "$work/root/proc" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
step() { echo "test-deb: $*"; }

step "contents of $deb"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' > "$work/files"
for want in /usr/bin/volctl /lib/systemd/system/volctl-boot.service \
	/lib/systemd/system/volctl-serve.service /lib/systemd/system/volctl-volume@.service \
	/lib/systemd/system/volctl-kms.service \
	/usr/share/man/man1/volctl.1.gz /usr/share/man/man1/volctl-boot.1.gz \
	/usr/share/bash-completion/completions/volctl /usr/share/zsh/vendor-completions/_volctl \
	/usr/share/fish/vendor_completions.d/volctl.fish \
	/usr/share/initramfs-tools/hooks/volctl /usr/share/initramfs-tools/scripts/local-top/volctl \
	/usr/share/initramfs-tools/conf-hooks.d/volctl \
	/usr/share/doc/volctl/examples/appliance.yaml /usr/share/doc/volctl/copyright; do
	grep -qxF "$want" "$work/files" || fail "$want is not in the package"
done

step "lintian"
lintian --fail-on error,warning "$deb" 2>&1 | grep -v 'running with root privileges' || true
lintian --fail-on error,warning "$deb" >/dev/null 2>&1 || fail "lintian reports errors or warnings"

dpkg-deb -x "$deb" "$work/pkg"
step "man pages"
for page in "$work"/pkg/usr/share/man/man1/*.1.gz; do
	text=$(MANWIDTH=80 man -l "$page" 2>"$work/man.err")
	[ -s "$work/man.err" ] && fail "$(basename "$page"): $(cat "$work/man.err")"
	grep -q '^NAME' <<<"$text" || fail "$(basename "$page") has no NAME section"
done

step "initramfs-tools hook and boot script"
for f in hooks/volctl scripts/local-top/volctl; do
	sh -n "$work/pkg/usr/share/initramfs-tools/$f" || fail "$f does not parse"
	[ -x "$work/pkg/usr/share/initramfs-tools/$f" ] || fail "$f is not executable"
	[ "$(sh "$work/pkg/usr/share/initramfs-tools/$f" prereqs)" = "" ] || fail "$f prereqs"
done
dpkg-deb -I "$deb" triggers | grep -qx "activate-noawait update-initramfs" || fail "no update-initramfs trigger"

step "completions"
bash -n "$work/pkg/usr/share/bash-completion/completions/volctl"
zsh -n "$work/pkg/usr/share/zsh/vendor-completions/_volctl"
fish -n "$work/pkg/usr/share/fish/vendor_completions.d/volctl.fish"
bash -c "source '$work/pkg/usr/share/bash-completion/completions/volctl' && complete -p volctl" >/dev/null \
	|| fail "the bash completion registers nothing for volctl"

step "a Debian 12 root (mmdebstrap, cached)"
include=libcryptsetup12,libtss2-esys-3.0.2-0,libtss2-mu0,libtss2-tctildr0,e2fsprogs,init-system-helpers,systemd,man-db,fdisk
# Cached per package list: a changed list makes a new root.
base=target/vm/debian-bookworm-deb-test-$(echo "$include" | sha256sum | cut -c1-12).tar
if [ ! -f "$base" ]; then
	mkdir -p target/vm
	mmdebstrap --quiet --variant=minbase --include="$include" \
		bookworm "${base%.tar}.part.tar" http://deb.debian.org/debian
	mv "${base%.tar}.part.tar" "$base"
fi
root="$work/root"
mkdir -p "$root" && tar -C "$root" -xf "$base"
mount -t proc proc "$root/proc"
cp "$deb" "$root/tmp/volctl.deb"
# What the root holds, but for dpkg's own records and logs.
snapshot() {
	(cd "$root" && find . -xdev \( -path ./proc -o -path ./run -o -path ./tmp -o -path ./var/lib/dpkg -o -path ./var/log -o -path ./var/cache \) -prune -o -print | sort)
}
snapshot > "$work/before"

step "systemd-analyze verify (the root's systemd)"
chroot "$root" dpkg -i /tmp/volctl.deb >/dev/null
for unit in volctl-boot.service volctl-serve.service volctl-volume@.service volctl-kms.service; do
	out=$(chroot "$root" systemd-analyze verify --man=no "/lib/systemd/system/$unit" 2>&1) \
		|| fail "systemd-analyze verify $unit: $out"
	[ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
done

step "installed: /etc/volctl 0700, volctl-boot enabled, nothing started"
[ "$(stat -c %a "$root/etc/volctl")" = 700 ] || fail "/etc/volctl is not 0700"
[ -L "$root/etc/systemd/system/sysinit.target.wants/volctl-boot.service" ] || fail "volctl-boot.service is not enabled"
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/volctl-serve.service" ] || fail "volctl-serve.service is enabled on install"
chroot "$root" volctl version | grep -q '^volctl ' || fail "volctl does not run in the root"

step "the image-build recipe (docs/installing.md), as a build script runs it, with the installed volctl"
chroot "$root" sh -euc '
	cd /tmp
	truncate -s 2G stick.img
	printf "label: gpt\nsize=1MiB, name=META\n" | sfdisk --quiet stick.img
	volctl validate -f /usr/share/doc/volctl/examples/appliance.yaml >/dev/null
	volctl provision --disk stick.img -f /usr/share/doc/volctl/examples/appliance.yaml
	volctl provision --disk stick.img -f /usr/share/doc/volctl/examples/appliance.yaml | grep -q "nothing to do"
	sfdisk --dump stick.img | grep -c "name=\"\(META\|STATE\|EPHEMERAL\|persistence\)\"" | grep -qx 4
	rm stick.img
' || fail "the image-build recipe"

step "upgrade (the same package again) and purge"
chroot "$root" dpkg -i /tmp/volctl.deb >/dev/null
chroot "$root" dpkg --purge volctl >/dev/null
snapshot > "$work/after"
diff -u "$work/before" "$work/after" || fail "installing and purging changed the root's files (above)"
step "ok"
