# SPDX-License-Identifier: GPL-3.0-or-later
# Anchor OS top-level build. Everything heavy is cached outside the clone under
# $(ANCHOR_CACHE) (default /var/cache/anchor-os), keyed by input hashes, so a
# second run is fast. See docs/BUILD.md.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

ANCHOR_CACHE ?= /var/cache/anchor-os
export ANCHOR_CACHE
# This checkout's own cargo target dir under the cache (scripts/cargo-target.sh says why).
ifndef CARGO_TARGET_DIR
CARGO_TARGET_DIR := $(shell ANCHOR_CACHE='$(ANCHOR_CACHE)' scripts/cargo-target.sh)
endif
export CARGO_TARGET_DIR
# Whole-crate builds: incremental state only costs time and disk on a build that runs once.
CARGO_INCREMENTAL ?= 0
export CARGO_INCREMENTAL
# Where finished artifacts are linked by the build scripts (stable names).
ANCHOR_OUT ?= $(ANCHOR_CACHE)/out
export ANCHOR_OUT

CARGO ?= cargo

.PHONY: all setup build static lint fmt-check clippy gates unit escape fuzz-smoke \
        kernels guest-kernel host-kernel images images-repro initramfs uki uki-check systest test run qemu bench soak clean help \
        arm64 static-aarch64 kernels-arm64 images-arm64 initramfs-arm64 run-arm64

all: build

help:
	@echo "make run        boot Anchor OS under QEMU on this terminal: bay0 as PID 1 opens the work room (ROOM=web|dev|work|, MEM=MiB, VAULT=1: a vault kept in \$$ANCHOR_CACHE/run-vault, NET=0: no uplink)"
	@echo "make test       everything CI runs: setup, lint, gates, unit, escape, fuzz smoke, kernels, images, system tests"
	@echo "make escape     namespace rooms on this host: the escape-resistance suite, 100-cycle leak test (needs images)"
	@echo "make bench      benchmarks (printed figures, never asserted)"
	@echo "make soak       run a test stage N times, pass/fail table per test (STAGE=system|unit|hostile|escape, N=10|20|20|20)"
	@echo "make qemu       the anchor-host harness, interactive on the serial console"
	@echo "make kernels    guest + host kernels (cached by config hash)"
	@echo "make images     room base images (reproducible SquashFS)"
	@echo "make arm64      the arm64 (Duet 5) artifacts: static aarch64 binaries, arm64 kernels, images, initramfs"
	@echo "make run-arm64  boot the arm64 anchor host (qemu-system-aarch64 virt, EL2) and open a room (ROOM=..., APPEND=kvm-arm.mode=protected)"
	@echo "make uki        the signed base: a Unified Kernel Image signed with this cache's TEST keys"
	@echo "make setup      install Debian packages / rust targets this needs (idempotent)"
	@echo "cache: ANCHOR_CACHE=$(ANCHOR_CACHE)"

setup:
	scripts/setup.sh

build: setup
	$(CARGO) build --workspace --all-targets

# Static release binaries for the initramfs and the room images.
static: setup
	scripts/build-static.sh

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: fmt-check clippy

gates: setup
	scripts/ci/run-all.sh

unit: setup
	$(CARGO) nextest run --workspace --exclude anchor-systest --exclude anchor-escape --no-fail-fast

# Namespace rooms for real on this host (root): hosted bay0 with the static product
# binaries and the real base image (tests/escape: escape-resistance suite, leak cycles).
escape: images
	$(CARGO) nextest run -p anchor-escape --no-fail-fast

fuzz-smoke: setup
	scripts/fuzz-smoke.sh

guest-kernel: setup
	guest-kernel/build.sh

host-kernel: setup
	host-kernel/build.sh

kernels: guest-kernel host-kernel

images: setup static
	images/build.sh

initramfs: static kernels images
	tests/system/mkinitramfs.sh

# arm64 (the Duet 5 path): cross-built static binaries, arm64 kernels from the same
# linux-source (cached by input hash like the x86_64 ones), arm64 room images and the
# arm64 anchor-host initramfs, all under $(ANCHOR_OUT)/aarch64/.
static-aarch64: setup
	scripts/build-static.sh aarch64

kernels-arm64: setup
	guest-kernel/build-arm64.sh
	host-kernel/build-arm64.sh

images-arm64: static-aarch64
	images/build.sh --arch aarch64

initramfs-arm64: static-aarch64 kernels-arm64 images-arm64
	tests/system/mk-arm64-initramfs.sh --product

arm64: initramfs-arm64

# Images build reproducibly (twice from empty caches, same bytes) and have the right layout
# (x86_64 and arm64).
images-repro: images images-arm64
	images/tests/reproducible.sh

# The signed base (docs/SIGNING.md): $(ANCHOR_OUT)/anchor.efi, cached by input hash.
uki: initramfs
	uki/build.sh

# The UKI builds reproducibly; its signed PCR 11 policy unseals on a TPM (swtpm) for our
# images and not for a foreign one; the images tests/system/tests/uki.rs boots.
uki-check: uki
	uki/tests/reproducible.sh
	uki/tests/pcr-policy.sh
	uki/tests/mk-test-ukis.sh

systest: initramfs images-repro arm64 uki-check
	tests/system/scripts/mkinitramfs-cache.sh
	tests/system/run-all.sh

test: setup lint gates unit escape fuzz-smoke systest
	@echo "make test: all stages passed"

# The room `make run` opens (policies/$(ROOM).toml); ROOM= (empty) boots bay0 alone with
# its operator shell. 6 GiB (allocated lazily by QEMU) fit two shipped 2 GiB rooms at once
# next to the host's reserve (docs/ARCHITECTURE.md, admission).
# VAULT=1 adds the vault: a disk and a TPM (swtpm) kept in $(ANCHOR_CACHE)/run-vault
# between runs (made at the first boot, unlocked with its passphrase at every later one;
# remove the directory to start again). NET=0 boots the anchor host without its uplink
# (QEMU's user-mode network, which it configures at boot; outbound rooms reach the world
# through it). See tests/system/run-qemu.sh --help.
ROOM ?= work
MEM ?= 6144
VAULT ?=
NET ?=
run: initramfs
	ANCHOR_MEM=$(MEM) ANCHOR_APPEND="bay0.shell=1 $(if $(ROOM),bay0.room=$(ROOM)) $(APPEND)" \
	  tests/system/run-qemu.sh --interactive $(if $(filter 0,$(NET)),,--uplink) \
	  $(if $(VAULT),--vault "$(ANCHOR_CACHE)/run-vault")

qemu: run

run-arm64: arm64
	qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max,pauth-impdef=on -accel tcg \
	  -m $(MEM) -smp 1 -nographic -no-reboot -kernel $(ANCHOR_OUT)/aarch64/host-Image \
	  -initrd $(ANCHOR_OUT)/aarch64/initramfs.cpio.gz \
	  -append "console=ttyAMA0 panic=-1 bay0.shell=1 $(if $(ROOM),bay0.room=$(ROOM)) $(APPEND)"

bench: initramfs arm64 uki
	scripts/bench.sh
	uki/bench.sh

# Flakiness hunt, not part of `make test`: STAGE=system (default, N=10), unit, hostile or
# escape (N=20).
STAGE ?= system
soak: $(if $(filter system,$(STAGE)),initramfs,$(if $(filter escape,$(STAGE)),images,setup))
	scripts/soak.sh --stage $(STAGE) $(if $(N),-n $(N))

clean:
	$(CARGO) clean
