#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Builds the anchor-host initramfs: bay0 as /init, plus (when present) what the system
# tests carry: the VMM, the in-room agent, the room kernel, room images and policies.
# Reproducible (sorted entries, fixed mtimes, uid/gid 0, gzip -n) and cached by the
# hash of its inputs under $ANCHOR_CACHE/initramfs: a second run with the same inputs
# only relinks the cached archive.
#
# usage: mkinitramfs.sh [--bay0 PATH] [--out PATH] [--minimal] [--policies DIR]
#   --bay0 PATH      the bay0 binary (default $ANCHOR_OUT/bin/bay0)
#   --out PATH       where to put the archive (default $ANCHOR_OUT/initramfs.cpio.gz)
#   --minimal        bay0 only (used for the watchdog-stall test image)
#   --policies DIR   also ship DIR/*.toml as room policies (the system tests' small rooms)
#   --extra SRC:DEST also ship file SRC at DEST (benchmark helpers; repeatable)
set -euo pipefail
SELF=$(realpath "$0")
# shellcheck source=tests/system/initramfs-lib.sh
source "$(dirname "$SELF")/initramfs-lib.sh"
cd "$(dirname "$SELF")/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
BAY0="$ANCHOR_OUT/bin/bay0"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
OUT="$ANCHOR_OUT/initramfs.cpio.gz"
MINIMAL=0
EXTRA_POLICIES=
EXTRAS=()
die() { echo "mkinitramfs: $*" >&2; exit 1; }
while (($#)); do
  case "$1" in
    --bay0) BAY0="${2:?--bay0 needs a path}"; shift 2 ;;
    --out) OUT="${2:?--out needs a path}"; shift 2 ;;
    --minimal) MINIMAL=1; shift ;;
    --policies) EXTRA_POLICIES="${2:?--policies needs a directory}"; shift 2 ;;
    --extra) EXTRAS+=("${2:?--extra needs SRC:DEST}"); shift 2 ;;
    -h|--help) sed -n '3,15p' "$SELF"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ -x "$BAY0" ]] || die "bay0 binary $BAY0 is missing: run scripts/build-static.sh"
if ldd "$BAY0" 2>&1 | grep -q '=>'; then die "$BAY0 is dynamically linked; /init must be static"; fi

# Manifest: "destination<TAB>source<TAB>mode", one line per file.
manifest=$(mktemp); trap 'rm -f "$manifest"' EXIT
add() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$manifest"; }
add init "$BAY0" 0755
if ((!MINIMAL)); then
  [[ -f "$ANCHOR_OUT/bin/anchor-vmm" ]] && add usr/bin/anchor-vmm "$ANCHOR_OUT/bin/anchor-vmm" 0755
  [[ -f "$ANCHOR_OUT/bin/anchor-agent" ]] && add usr/lib/anchor/anchor-agent "$ANCHOR_OUT/bin/anchor-agent" 0755
  [[ -f "$ANCHOR_OUT/bin/anchor-jail" ]] && add usr/lib/anchor/anchor-jail "$ANCHOR_OUT/bin/anchor-jail" 0755
  [[ -f "$ANCHOR_OUT/bin/anchor-courier" ]] && add usr/lib/anchor/anchor-courier "$ANCHOR_OUT/bin/anchor-courier" 0755
  [[ -f "$ANCHOR_OUT/bin/anchorctl" ]] && add usr/bin/anchorctl "$ANCHOR_OUT/bin/anchorctl" 0755
  # The operator shell (bay0.shell=1) and its tools: busybox-static, applets linked below.
  [[ -x "$BUSYBOX" ]] && add bin/busybox "$BUSYBOX" 0755
  # What the operator shell reads at its start ($ENV): poweroff, halt and reboot that
  # send bay0's signals (busybox's applets send busybox init's).
  add etc/anchor/operator.sh bay0/operator/operator.sh 0644
  [[ -f "$ANCHOR_OUT/guest-vmlinux" ]] && add usr/lib/anchor/kernel/vmlinux "$ANCHOR_OUT/guest-vmlinux" 0644
  for f in "$ANCHOR_OUT"/images/*.squashfs; do
    [[ -f "$f" ]] && add "usr/lib/anchor/images/$(basename "$f")" "$f" 0644
  done
  for x in "${EXTRAS[@]}"; do
    [[ -f "${x%%:*}" ]] || die "--extra: ${x%%:*} is missing"
    add "${x#*:}" "${x%%:*}" 0755
  done
  for f in policies/*.toml ${EXTRA_POLICIES:+"$EXTRA_POLICIES"/*.toml}; do
    [[ -f "$f" ]] && add "etc/anchor/policies/$(basename "$f")" "$f" 0644
  done
  # passt, the user-mode network stack anchor-jail starts for a room with network =
  # "outbound" (Debian's passt; dynamically linked: its libraries and the loader come
  # along). It re-executes itself as passt.avx2 where the CPU has AVX2.
  passt=$(command -v passt || echo /usr/bin/passt)
  [[ -x "$passt" ]] || die "passt not found (apt-get install passt; scripts/setup.sh)"
  add usr/bin/passt "$passt" 0755
  [[ -x "$passt.avx2" ]] && add usr/bin/passt.avx2 "$passt.avx2" 0755
  while read -r lib; do
    add "${lib#/}" "$lib" 0755
  done < <(libs_of "$passt")
  # The vault helper (dynamically linked: libtss2, libcryptsetup) and mke2fs for the
  # vault's filesystem, with their shared libraries and the loader; libtss2-tctildr
  # dlopen()s its TCTI, which ldd cannot see.
  if [[ -f "$ANCHOR_OUT/bin/anchor-vault" ]]; then
    add usr/bin/anchor-vault "$ANCHOR_OUT/bin/anchor-vault" 0755
    mke2fs=$(command -v mke2fs || echo /sbin/mke2fs)
    [[ -x "$mke2fs" ]] || die "mke2fs not found (apt-get install e2fsprogs)"
    add usr/sbin/mke2fs "$mke2fs" 0755
    [[ -f /etc/mke2fs.conf ]] && add etc/mke2fs.conf /etc/mke2fs.conf 0644
    tcti=$(ls /usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0 2>/dev/null) \
      || die "libtss2-tcti-device.so.0 not found (apt-get install libtss2-tcti-device0)"
    while read -r lib; do
      add "${lib#/}" "$lib" 0755
    done < <( { libs_of "$ANCHOR_OUT/bin/anchor-vault"; libs_of "$mke2fs"; libs_of "$tcti"; echo "$tcti"; } | sort -u)
  fi
fi
LC_ALL=C sort -u -o "$manifest" "$manifest"

# Cache key: this script, and every destination, mode and source content.
key=$( {
  sha256sum < "$SELF"
  sha256sum < "$INITRAMFS_LIB"
  while IFS=$'\t' read -r dest src mode; do
    printf '%s %s %s\n' "$dest" "$mode" "$(sha256sum < "$src" | cut -d' ' -f1)"
  done < "$manifest"
} | sha256sum | cut -c1-32)
cache_dir="$ANCHOR_CACHE/initramfs"
cached="$cache_dir/$key.cpio.gz"
mkdir -p "$cache_dir" "$(dirname "$OUT")"

# A cached archive that is not a whole gzip stream (a power cut after its rename, before
# its bytes reached the disk, leaves it empty or cut off) is built again.
if [[ -f "$cached" ]] && ! gzip -t "$cached" 2>/dev/null; then
  echo "mkinitramfs: $cached is damaged (cut off?): building it again" >&2
  rm -f "$cached"
fi
if [[ ! -f "$cached" ]]; then
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"; rm -f "$manifest" "${tmp:-}"' EXIT
  # /persist: the vault's mount point (/ is read-only once bay0 runs).
  mkdir -p "$stage"/{dev,proc,sys,run,tmp,etc,persist,usr/bin,usr/lib}
  while IFS=$'\t' read -r dest src mode; do
    install -D -m "$mode" "$src" "$stage/$dest"
  done < "$manifest"
  if [[ -x "$stage/bin/busybox" ]]; then
    for applet in $("$stage/bin/busybox" --list | LC_ALL=C sort); do
      [[ "$applet" == busybox || -e "$stage/bin/$applet" ]] || ln -s busybox "$stage/bin/$applet"
    done
  fi
  # The anchor host's resolver: what the kernel learnt at boot when it configured the
  # uplink itself (`ip=dhcp`: /proc/net/pnp lists the DHCP server's nameservers, none
  # otherwise); passt reads it for an outbound room's DNS. Unless one was shipped.
  [[ -e "$stage/etc/resolv.conf" ]] || ln -s ../proc/net/pnp "$stage/etc/resolv.conf"
  if [[ $(id -u) -eq 0 ]]; then
    # The kernel opens /dev/console for init's stdio before /dev is mounted.
    mknod -m 0600 "$stage/dev/console" c 5 1
    mknod -m 0666 "$stage/dev/null" c 1 3
  fi
  # A temporary name of its own (two runs may build the same key at once), on disk
  # before it is renamed into place.
  tmp=$(mktemp "$cached.XXXXXX.tmp")
  chmod 0644 "$tmp"
  cpio_stage "$stage" | gzip -n -6 > "$tmp"
  sync "$tmp"
  mv "$tmp" "$cached"
  sync "$cache_dir"
  echo "mkinitramfs: built $cached"
else
  echo "mkinitramfs: cached $cached"
fi
ln -f "$cached" "$OUT" 2>/dev/null || cp -f "$cached" "$OUT"
# Keep the 8 most recent archives in the cache.
ls -1t "$cache_dir"/*.cpio.gz 2>/dev/null | tail -n +9 | xargs -r rm -f
printf 'mkinitramfs: %s (%d bytes, %d files)\n' "$OUT" "$(stat -c %s "$OUT")" "$(wc -l < "$manifest")"
