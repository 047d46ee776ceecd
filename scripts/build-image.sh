#!/bin/bash
# Builds the OCI image of volctl (for `volctl kms-server` in Kubernetes,
# docs/kms-server.md) without pulling from any registry: a root filesystem
# of the Debian 12 libraries volctl links (mmdebstrap, extract variant,
# cached under target/vm), the binary from the Debian package, a `nonroot`
# user (65532); committed with buildah as an OCI archive,
# target/oci/volctl_<version>.oci.tar (image name volctl:<version>).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb=target/debian/volctl_${version}_amd64.deb
out=target/oci
archive=$out/volctl_${version}.oci.tar
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
[ -f "$deb" ] || { echo "no $deb: run make deb first" >&2; exit 1; }

include=libcryptsetup12,libtss2-esys-3.0.2-0,libtss2-mu0,libtss2-tctildr0,libtss2-tcti-device0
base=target/vm/debian-bookworm-oci-$(echo "$include" | sha256sum | cut -c1-12).tar
if [ ! -f "$base" ]; then
	mkdir -p target/vm
	mmdebstrap --quiet --variant=extract --include="$include" \
		bookworm "${base%.tar}.part.tar" http://deb.debian.org/debian
	mv "${base%.tar}.part.tar" "$base"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root" && tar -C "$root" -xf "$base"
# What a container needs of the rest: the binary, its licence, a user.
rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/var/cache/apt" "$root/var/lib/apt"
dpkg-deb --fsys-tarfile "$deb" | tar -C "$root" -x ./usr/bin/volctl ./usr/share/doc/volctl/copyright
mkdir -p "$root/etc" "$root/tmp" && chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
store=(--root "$PWD/$out/storage" --runroot "$PWD/$out/run" --storage-driver vfs)
c=$(buildah "${store[@]}" from scratch)
buildah "${store[@]}" add "$c" "$root/" / >/dev/null
buildah "${store[@]}" config \
	--entrypoint '["/usr/bin/volctl"]' --cmd '["kms-server", "--help"]' \
	--user 65532:65532 --port 4050/tcp --workingdir / \
	--label org.opencontainers.image.title=volctl \
	--label org.opencontainers.image.version="$version" \
	--label org.opencontainers.image.licenses=Apache-2.0 "$c"
rm -f "$archive"
buildah "${store[@]}" commit --quiet --rm --timestamp "$SOURCE_DATE_EPOCH" \
	"$c" "oci-archive:$archive:volctl:$version" >/dev/null
echo "$archive"
