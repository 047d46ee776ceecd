# volctl — every task a newcomer or CI needs. Run as root on Debian 12.
SHELL := /bin/bash
# rustup installs cargo here; make it visible to every recipe.
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
VOLCTL := target/debug/volctl
DEMO_DIR := target/demo

APT_PACKAGES := pkg-config clang libclang-dev libcryptsetup-dev cryptsetup-bin \
	gdisk e2fsprogs xfsprogs btrfs-progs util-linux ca-certificates curl \
	qemu-system-x86 busybox-static kmod cpio xz-utils fdisk exfatprogs \
	libtss2-dev libtss2-tcti-swtpm0 libtss2-tcti-device0 swtpm swtpm-tools tpm2-tools systemd openssl ovmf socat \
	tang clevis clevis-luks jose protobuf-compiler etcd-server etcd-client \
	python3 dpkg-dev lintian man-db zsh fish mmdebstrap buildah skopeo

.PHONY: all deps build demo demo-appliance test e2e lint fmt bench schema clean deb test-deb image test-image

all: build

## deps: install the system packages and a Rust toolchain (if none).
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(CARGO) >/dev/null 2>&1 || [ -x $$HOME/.cargo/bin/cargo ] || \
		{ echo "installing Rust with rustup"; curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt -c clippy; }
	@if command -v rustup >/dev/null 2>&1; then \
		rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt; fi
	@echo "deps: ok"

build:
	$(CARGO) build --workspace

## demo: the main job on a built-in demo disk image (see README).
demo: deps build
	bash scripts/demo.sh

## demo-appliance: keys a person holds, on the image of a USB stick's persistence partition.
demo-appliance: deps build
	bash scripts/demo-appliance.sh

## test: every test (unit, real LUKS2 headers checked with cryptsetup, CLI).
test: deps
	$(CARGO) test --workspace

## e2e: the VM suite (real dm-crypt, mkfs, mount under qemu with Debian's kernel).
e2e: deps
	mkdir -p target; $(CARGO) test -p volctl-controller --test e2e_vm -- --ignored --test-threads=1 --nocapture 2>&1 | tee target/e2e.log | grep -E '^(SCENARIO|test |test result)'; \
	rc=$${PIPESTATUS[0]}; [ $$rc -eq 0 ] || scripts/e2e-failures.sh target/e2e.log; exit $$rc

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## bench: converge cost against test-opening every slot, volumes unlocked
## at once (KDFs in-process vs in workers), and in-place encryption against
## `cryptsetup reencrypt --encrypt`, decryption in place against
## `cryptsetup reencrypt --decrypt --header`, 1,000 simulated nodes
## unsealing at once (stateless, file store, replicas over etcd, failover)
## and `-n` across 200 nodes (prints tables).
bench: deps
	$(CARGO) bench -p volctl-controller --bench converge
	$(CARGO) bench -p volctl-controller --bench parallel_unlock
	$(CARGO) build -p volctl-controller --bin volctl
	scripts/bench-inplace.sh
	OP=decrypt scripts/bench-inplace.sh
	$(CARGO) test -p volctl-controller --test kms_keys -- --nocapture 2>&1 | grep FIGURES
	$(CARGO) test -p volctl-controller --test tang_keys black_hole -- --nocapture 2>&1 | grep FIGURES
	$(CARGO) bench -p volctl-controller --bench kms_storm
	$(CARGO) bench -p volctl-controller --bench fanout

## schema: write the JSON Schemas to schema/.
schema: build
	mkdir -p schema
	$(VOLCTL) schema > schema/volctl.schema.json
	$(VOLCTL) schema --kind VolumeConfig > schema/VolumeConfig.schema.json
	$(VOLCTL) schema --kind UserVolumeConfig > schema/UserVolumeConfig.schema.json

## deb: the Debian package, target/debian/volctl_<version>_amd64.deb (docs/installing.md).
deb: deps
	bash scripts/build-deb.sh

## test-deb: the package checked: contents, lintian, units, man pages,
## completions, and install/upgrade/purge in a Debian 12 chroot.
test-deb: deb
	bash scripts/test-deb.sh

## image: the OCI image, target/oci/volctl_<version>.oci.tar (volctl:<version>; docs/kms-server.md).
image: deb
	bash scripts/build-image.sh

## test-image: the image's config, and kms-server from it serving a seal and an unseal.
test-image: image build
	bash scripts/test-image.sh

clean:
	$(CARGO) clean
