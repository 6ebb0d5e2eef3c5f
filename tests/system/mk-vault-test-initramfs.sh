#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Test-only initramfs for the vault power-cut test (tests/vault.rs): the product
# initramfs with a second archive appended (the kernel unpacks concatenated archives)
# holding /vaulttest: busybox-static and a script run with rdinit=/vaulttest/init. The
# script unlocks the vault with the product's anchor-vault on the console, checks what
# earlier boots acknowledged, then appends fsync'ed records, printing `ACK BOOT N` after
# each. Never part of the product.
#
# usage: mk-vault-test-initramfs.sh [BASE [OUT]]
#   BASE  product initramfs (default $ANCHOR_OUT/initramfs.cpio.gz)
#   OUT   result (default $ANCHOR_OUT/initramfs-vault-test.cpio.gz)
set -euo pipefail
SELF=$(realpath "$0")
# shellcheck source=tests/system/initramfs-lib.sh
source "$(dirname "$SELF")/initramfs-lib.sh"
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${BUSYBOX:=/bin/busybox}"
BASE="${1:-$ANCHOR_OUT/initramfs.cpio.gz}"
OUT="${2:-$ANCHOR_OUT/initramfs-vault-test.cpio.gz}"
die() { echo "mk-vault-test-initramfs: $*" >&2; exit 1; }
[[ -f "$BASE" ]] || die "$BASE missing: run tests/system/mkinitramfs.sh"
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX missing (apt-get install busybox-static)"
if ldd "$BUSYBOX" 2>&1 | grep -q '=>'; then die "$BUSYBOX is not static"; fi
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/vaulttest"
install -m 0755 "$BUSYBOX" "$stage/vaulttest/busybox"
cat > "$stage/vaulttest/init" <<'SCRIPT'
#!/vaulttest/busybox sh
# Test-only PID 1 for the vault power-cut test (see mk-vault-test-initramfs.sh).
/vaulttest/busybox --install -s /vaulttest
export PATH=/vaulttest:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=0755 tmpfs /run
LINE="0123456789abcdef0123456789abcdef"
anchor-vault --disk /dev/vda --policies /vaulttest/none unlock --first-boot
rc=$?
echo "vaulttest: unlock exit $rc"
[ "$rc" = 0 ] || poweroff -f
echo "vaulttest: pcr15=$(cat /sys/class/tpm/tpm0/pcr-sha256/15 2>&1)"
boot=0
for f in /persist/stream.*; do
  [ -e "$f" ] || continue
  whole=$(wc -l < "$f")
  tail=no
  [ "$(wc -c < "$f")" -gt 0 ] && [ "$(tail -c 1 "$f" | od -An -c | tr -d ' ')" != '\n' ] && tail=yes
  head -n "$whole" "$f" | awk -v f="$f" -v want="$LINE" -v tail="$tail" '
    $0 != ("rec " NR-1 " " want) { print "vaulttest: " f " BROKEN at line " NR; bad = 1; exit }
    END { if (!bad) print "vaulttest: " f " records=" NR " partial_tail=" tail }'
  boot=$((boot + 1))
done
f=/persist/stream.$boot
: > "$f"
sync "$f" /persist
echo "vaulttest: writing $f"
i=0
while :; do
  echo "rec $i $LINE" | dd of="$f" oflag=append conv=notrunc,fsync 2>/dev/null || { echo "vaulttest: write failed"; break; }
  echo "ACK $boot $i"
  i=$((i + 1))
done
poweroff -f
SCRIPT
chmod 0755 "$stage/vaulttest/init"
mkdir -p "$(dirname "$OUT")"
{ cat "$BASE"; cpio_stage "$stage" | gzip -n -6; } > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
printf 'mk-vault-test-initramfs: %s (%d bytes)\n' "$OUT" "$(stat -c %s "$OUT")"
