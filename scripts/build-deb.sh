#!/bin/bash
# Builds target/debian/volctl_<version>_amd64.deb from this tree with
# dpkg-deb: the release binary, systemd units, man pages and shell
# completions made by the binary itself from its command-line definition,
# example configs, maintainer scripts. Its dependencies are computed from
# the binary by dpkg-shlibdeps. Reproducible: file times are the last
# commit's, owners root.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out=target/debian
root=$out/root
deb=$out/volctl_${version}_amd64.deb
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

cargo build --release -p volctl-controller --bin volctl
rm -rf "$root" && mkdir -p "$root/DEBIAN"

install -D -m 0755 -s target/release/volctl "$root/usr/bin/volctl"
for unit in dist/systemd/*.service; do
	install -D -m 0644 "$unit" "$root/lib/systemd/system/$(basename "$unit")"
done

# initramfs-tools: the hook (opt-in, /etc/default/volctl) and the boot script.
install -D -m 0755 dist/initramfs-tools/hooks/volctl "$root/usr/share/initramfs-tools/hooks/volctl"
install -D -m 0755 dist/initramfs-tools/scripts/local-top/volctl "$root/usr/share/initramfs-tools/scripts/local-top/volctl"
install -D -m 0644 dist/initramfs-tools/conf-hooks.d/volctl "$root/usr/share/initramfs-tools/conf-hooks.d/volctl"

man="$root/usr/share/man/man1"
"$root/usr/bin/volctl" man-pages --out "$man" >/dev/null
gzip -9n "$man"/*.1

"$root/usr/bin/volctl" completion bash | install -D -m 0644 /dev/stdin "$root/usr/share/bash-completion/completions/volctl"
"$root/usr/bin/volctl" completion zsh | install -D -m 0644 /dev/stdin "$root/usr/share/zsh/vendor-completions/_volctl"
"$root/usr/bin/volctl" completion fish | install -D -m 0644 /dev/stdin "$root/usr/share/fish/vendor_completions.d/volctl.fish"

doc="$root/usr/share/doc/volctl"
install -D -m 0644 dist/debian/copyright "$doc/copyright"
for f in examples/*.yaml; do install -D -m 0644 "$f" "$doc/examples/$(basename "$f")"; done
when=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
printf 'volctl (%s) unstable; urgency=medium\n\n  * Built from the volctl source tree.\n\n -- volctl developers <volctl@example.org>  %s\n' \
	"$version" "$when" | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

install -D -m 0644 dist/debian/lintian-overrides "$root/usr/share/lintian/overrides/volctl"

for script in postinst prerm postrm; do
	install -m 0755 "dist/debian/$script" "$root/DEBIAN/$script"
done
# A new hook or boot script reaches the initramfs at the next update-initramfs.
install -m 0644 dist/debian/triggers "$root/DEBIAN/triggers"

# dpkg-shlibdeps reads debian/control from the folder it runs in.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debian"
printf 'Source: volctl\n\nPackage: volctl\nArchitecture: amd64\n' > "$work/debian/control"
depends=$(cd "$work" && dpkg-shlibdeps -O "$OLDPWD/$root/usr/bin/volctl" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "dpkg-shlibdeps found no dependency" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
	dist/debian/control.in > "$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
