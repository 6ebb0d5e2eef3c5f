#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Installs what `make run` / `make test` need on a fresh Debian 12 machine (as root).
# Idempotent: checks before it installs; a second run does nothing and says so.
set -euo pipefail

PKGS=(
  build-essential bc bison flex libelf-dev libssl-dev dwarves cpio zstd xz-utils kmod
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  swtpm swtpm-tools tpm2-tools cryptsetup squashfs-tools erofs-utils
  ovmf systemd-boot-efi sbsigntool busybox-static linux-source-6.1 bubblewrap
  libclang-dev libcryptsetup-dev libtss2-dev pkg-config python3 socat device-tree-compiler
  mtools dosfstools fdisk python3-venv faketime
  e2fsprogs libtss2-tcti-device0 libtss2-tcti-swtpm0
  jq  # scripts/ci/bay0-deps.sh reads cargo metadata with it
  strace less  # images/flavours/dev.toml copies them (with bash and jq) from this machine
  libseccomp-dev  # vmm/bench-firecracker.sh: builds the Firecracker peer of `make bench`
  passt  # the rooms' userspace network stack: anchor-jail starts one per outbound room (in the initramfs)
  iproute2  # jail/tests/room.rs: "the outside" of a namespace room is a netns behind a veth pair
)

# QEMU comes from bookworm-backports (10.x): the machine image ships qemu-utils from
# there, and bookworm's 7.2 system emulators cannot be installed beside it.
QEMU_PKGS=(qemu-system-x86 qemu-system-arm qemu-utils)
BPO_LIST=/etc/apt/sources.list.d/anchor-bookworm-backports.list

is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
for p in "${PKGS[@]}"; do
  is_installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages (${missing[*]}) and not root: run as root" >&2
    exit 1
  fi
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: Debian packages present (${#PKGS[@]})"
fi

# The backports line comes from the URI of the bookworm source apt is already configured
# with (a local mirror or proxy keeps working); it is never a hard-coded host.
bookworm_uri() {
  apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null \
    | awk '$1 == "bookworm" { print $2; exit }'
}
ensure_backports() {
  # A backports source the machine already has (not ours) is used as it is.
  if grep -rqs --exclude="$(basename "$BPO_LIST")" 'bookworm-backports' \
       /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "setup: bookworm-backports is already configured on this machine"
    return 0
  fi
  local uri
  uri=$(bookworm_uri)
  if [[ -z "$uri" ]]; then
    echo "setup: no bookworm source is configured for apt, so bookworm-backports cannot be" \
         "derived from it: add one (or a backports line) to /etc/apt/sources.list.d" >&2
    return 1
  fi
  local line="deb ${uri%/} bookworm-backports main"
  if [[ -f "$BPO_LIST" && "$(cat "$BPO_LIST")" == "$line" ]]; then
    echo "setup: $BPO_LIST present ($line)"
  else
    echo "$line" > "$BPO_LIST"
    echo "setup: wrote $BPO_LIST: '$line' (the mirror of the configured bookworm source)"
  fi
}

qmissing=()
for p in "${QEMU_PKGS[@]}"; do is_installed "$p" || qmissing+=("$p"); done
if ((${#qmissing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: QEMU from bookworm-backports is missing (${qmissing[*]}) and not root: run as root" >&2
    exit 1
  fi
  ensure_backports
  echo "setup: installing QEMU from bookworm-backports: ${qmissing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends -t bookworm-backports "${QEMU_PKGS[@]}"
else
  echo "setup: QEMU present ($(qemu-system-x86_64 --version | head -n1))"
fi

# Rust targets: aarch64 for the Duet 5 build gate. Not fetched from a promised
# registry, so a failure is reported plainly (the aarch64 gate then fails with it).
for t in aarch64-unknown-linux-gnu; do
  if rustup target list --installed 2>/dev/null | grep -qx "$t"; then
    echo "setup: rust target $t present"
  elif rustup target add "$t"; then
    echo "setup: rust target $t added"
  else
    echo "setup: WARNING: could not add rust target $t (rustup could not fetch it)" >&2
  fi
done

# cargo-fuzz for the fuzz smoke runs (crates.io).
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz from crates.io"
  cargo install --locked cargo-fuzz
else
  echo "setup: cargo-fuzz present"
fi

# A static arm64 busybox (Debian's busybox-static for arm64, unpacked into the cache) for
# the arm64 room images and the arm64 anchor-host tests.
"$(dirname "$0")/arm64-busybox.sh" >/dev/null && echo "setup: arm64 busybox present"

# virt-firmware (PyPI) enrols the Secure Boot test certificates into an OVMF variable store
# (uki/ovmf-vars.sh). A pinned version in its own venv under the cache; Debian's
# python3-cryptography is reused through --system-site-packages.
VFW_VERSION=26.10
VFW_VENV="${ANCHOR_CACHE:-/var/cache/anchor-os}/venv/virt-firmware-$VFW_VERSION"
if [[ -x "$VFW_VENV/bin/virt-fw-vars" ]]; then
  echo "setup: virt-firmware $VFW_VERSION present"
else
  echo "setup: installing virt-firmware $VFW_VERSION from PyPI into $VFW_VENV"
  rm -rf "$VFW_VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VFW_VENV"
  "$VFW_VENV/bin/pip" install -q "virt-firmware==$VFW_VERSION"
fi
