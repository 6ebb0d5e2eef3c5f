# SPDX-License-Identifier: GPL-3.0-or-later
# Shared by the initramfs builders (mkinitramfs.sh, mk-nested-initramfs.sh,
# mk-bench-initramfs.sh); sourced, not executed. The reproducibility rules of an
# initramfs live here once: fixed mtimes, sorted entries, root-owned newc cpio.

# Path of this file, for the builders' cache keys (a change here must rebuild).
INITRAMFS_LIB="$(realpath "${BASH_SOURCE[0]}")"

# cpio_stage DIR: write DIR's contents to stdout as a reproducible newc cpio archive.
cpio_stage() {
  find "$1" -exec touch -h -d @0 {} +
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort |
    cpio --quiet -o -H newc -R 0:0 --reproducible)
}

# libs_of BINARY: the shared libraries BINARY loads (absolute paths, sorted, one a line).
libs_of() {
  ldd "$1" | grep -o '/[^ ]*' | sort -u
}
