#!/bin/bash
# Checks the OCI image `make image` wrote: its config (entrypoint, user,
# exposed port), then runs `volctl kms-server` from the unpacked image in a
# chroot as the image's user, with its master keys and TLS key mounted as
# Kubernetes mounts a Secret under `fsGroup` (root-owned, group 65532,
# 0440), and converges a volume with a `kms` key against it from the host:
# a seal, then an unseal, one log line each. (`podman run` is refused on
# the development machine: its sandbox forbids setrlimit.)
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
archive=target/oci/volctl_${version}.oci.tar
volctl=target/debug/volctl
work=$(mktemp -d)
server=
cleanup() {
	[ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
	umount "$work/root/proc" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test-image: FAIL: $*" >&2; exit 1; }
step() { echo "test-image: $*"; }

step "config of $archive"
skopeo inspect --config "oci-archive:$archive" > "$work/config.json"
python3 - "$work/config.json" <<'PY' || fail "the image's config (above)"
import json, sys
c = json.load(open(sys.argv[1]))["config"]
want = {"Entrypoint": ["/usr/bin/volctl"], "User": "65532:65532"}
bad = [k for k, v in want.items() if c.get(k) != v]
if "4050/tcp" not in c.get("ExposedPorts", {}):
    bad.append("ExposedPorts")
if bad:
    print("wrong:", bad, c, file=sys.stderr)
    sys.exit(1)
PY

step "unpacked, as the image's user in a chroot"
skopeo copy --quiet "oci-archive:$archive" "dir:$work/image"
root=$work/root
mkdir -p "$root"
for layer in $(python3 -c 'import json,sys; print(" ".join(l["digest"].split(":")[1] for l in json.load(open(sys.argv[1]))["layers"]))' "$work/image/manifest.json"); do
	tar -C "$root" -xf "$work/image/$layer"
done
[ "$(stat -c %u "$root/usr/bin/volctl")" = 0 ] || fail "volctl is not root's in the image"
mkdir -p "$root/proc" && mount -t proc proc "$root/proc"
chroot --userspec=65532:65532 "$root" /usr/bin/volctl version | grep -q "^volctl $version" \
	|| fail "volctl does not run in the image"

step "kms-server from the image, its Secret mounted root:65532 0440 (fsGroup)"
"$volctl" gen --out "$work/pki" --san 127.0.0.1 >/dev/null
mkdir -p "$root/keys" "$root/tls"
"$volctl" kms-server genkey > "$root/keys/keys"
cp "$work/pki/server.crt" "$root/tls/tls.crt"
cp "$work/pki/server.key" "$root/tls/tls.key"
chown 0:65532 "$root/keys/keys" "$root/tls/tls.key"
chmod 0440 "$root/keys/keys" "$root/tls/tls.key"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chroot --userspec=65532:65532 --groups=65532 "$root" /usr/bin/volctl kms-server \
	--listen "127.0.0.1:$port" --master-key-file /keys/keys \
	--tls-cert /tls/tls.crt --tls-key /tls/tls.key 2> "$work/kms.log" &
server=$!
for _ in $(seq 50); do grep -q 'listening on' "$work/kms.log" && break; sleep 0.1; done
grep -q 'listening on' "$work/kms.log" || fail "kms-server did not start: $(cat "$work/kms.log")"

step "a seal and an unseal from the host"
cat > "$work/kms.yaml" <<YAML
apiVersion: v1alpha1
kind: UserVolumeConfig
name: data
provisioning: {diskSelector: {match: '!system_disk'}, maxSize: 1GiB}
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      kms: {endpoint: 'https://127.0.0.1:$port'}
YAML
truncate -s 40M "$work/disk.img"
for _ in format unlock; do
	"$volctl" converge --volume data --device "$work/disk.img" -f "$work/kms.yaml" \
		--kms-ca-file "$work/pki/ca.crt" --node-uuid 4c4c4544-0038-5910-8057-b4c04f4d3732 -o json > "$work/out.json" || fail "converge: $(cat "$work/out.json")"
done
python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1])).get("unlocked_by") != [0, "kms"])' "$work/out.json" \
	|| fail "the volume did not open by its kms key: $(cat "$work/out.json")"
grep -q 'sealed op="seal"' "$work/kms.log" || fail "no seal log line: $(cat "$work/kms.log")"
grep -q 'unsealed op="unseal"' "$work/kms.log" || fail "no unseal log line: $(cat "$work/kms.log")"
step "ok"
