#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Builds the initramfs archives of the arm64 anchor host (qemu-system-aarch64 -M virt,
# virtualization=on), from the aarch64 artifacts under $ANCHOR_OUT/aarch64/:
#
#   --product   bay0 as /init, anchor-jail, anchor-vmm, anchorctl, busybox (operator shell),
#               the room kernel (Image) at /usr/lib/anchor/kernel/Image, the arm64 room
#               images and the policies: the same layout as the x86_64 product initramfs
#               (tests/system/mkinitramfs.sh).
#               Default output: $ANCHOR_OUT/aarch64/initramfs.cpio.gz
#   --policies DIR  (with --product) also ship DIR/*.toml as room policies (the system
#               tests' small rooms, tests/system/policies; never in the product archive)
#   --nested    TEST-ONLY: an arm64 busybox /init that drives anchor-vmm by hand (never
#               the product): the hand-made guests of tests/system/arm64/guest.S (one
#               Image per case, assembled here), an anchor-vmm built with the test-only
#               seccomp-test-trigger feature, and a room boot without bay0.
#               Default output: $ANCHOR_CACHE/systest/arm64/initramfs-nested.cpio.gz
#
# usage: mk-arm64-initramfs.sh --product [--policies DIR]|--nested [--out PATH]
# Reproducible (initramfs-lib.sh: sorted, fixed mtimes, root-owned; gzip -n). Inputs:
# $ANCHOR_OUT/aarch64/bin/{bay0,anchor-jail,anchor-vmm,anchorctl} (scripts/build-static.sh aarch64),
# $ANCHOR_OUT/aarch64/guest-Image (guest-kernel/build-arm64.sh),
# $ANCHOR_OUT/aarch64/images/*.squashfs (images/build.sh --arch aarch64),
# the arm64 busybox (scripts/arm64-busybox.sh; --nested only), binutils-aarch64-linux-gnu.
#
# The --nested /init reads `arm64.case=` from its command line:
#   guests   run every hand-made guest, printing `arm64-case: NAME exit=N` after each
#            (the guest's serial lines are printed as they come)
#   gicv2    on a host whose GIC is a GICv2: a few hand-made guests, 8 and 9 vcpus, and
#            the base room, the same way
#   room     boot the base room (agent marker, then the agent resets the room), with
#            `arm64.vmtype=ordinary|protected` passed to anchor-vmm
# and prints `arm64-init: done` before powering off.
set -euo pipefail
SELF=$(realpath "$0")
HERE=$(dirname "$SELF")
# shellcheck source=tests/system/initramfs-lib.sh
source "$HERE/initramfs-lib.sh"
cd "$HERE/../.."
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
A="$ANCHOR_OUT/aarch64"
die() { echo "mk-arm64-initramfs: $*" >&2; exit 1; }
MODE=""
OUT=""
EXTRA_POLICIES=""
while (($#)); do
  case "$1" in
    --product) MODE=product; shift ;;
    --nested) MODE=nested; shift ;;
    --out) OUT="${2:?--out needs a path}"; shift 2 ;;
    --policies) EXTRA_POLICIES="${2:?--policies needs a directory}"; shift 2 ;;
    -h|--help) sed -n '3,33p' "$SELF"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ -n "$MODE" ]] || die "say --product or --nested (see --help)"
[[ -z "$EXTRA_POLICIES" || "$MODE" == product ]] || die "--policies goes with --product"
[[ -z "$EXTRA_POLICIES" || -d "$EXTRA_POLICIES" ]] || die "--policies $EXTRA_POLICIES: not a directory"
is_static() { ! aarch64-linux-gnu-readelf -l "$1" | grep -q 'program interpreter'; }
need() { [[ -f "$1" ]] || die "$1 missing: $2"; }
need "$A/bin/anchor-vmm" "run scripts/build-static.sh aarch64"
need "$A/guest-Image" "run guest-kernel/build-arm64.sh"
need "$A/images/base.squashfs" "run images/build.sh --arch aarch64"

stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
# /persist: the vault's mount point (/ is read-only once bay0 runs).
mkdir -p "$stage"/{dev,proc,sys,run,tmp,etc,persist,usr/bin,usr/lib/anchor/kernel,usr/lib/anchor/images}
install -m 0755 "$A/bin/anchor-vmm" "$stage/usr/bin/anchor-vmm"
install -m 0644 "$A/guest-Image" "$stage/usr/lib/anchor/kernel/Image"
for f in "$A"/images/*.squashfs; do install -m 0644 "$f" "$stage/usr/lib/anchor/images/"; done

if [[ "$MODE" == product ]]; then
  OUT="${OUT:-$A/initramfs.cpio.gz}"
  need "$A/bin/bay0" "run scripts/build-static.sh aarch64"
  is_static "$A/bin/bay0" || die "$A/bin/bay0 is dynamically linked; /init must be static"
  install -m 0755 "$A/bin/bay0" "$stage/init"
  need "$A/bin/anchor-jail" "run scripts/build-static.sh aarch64"
  install -D -m 0755 "$A/bin/anchor-jail" "$stage/usr/lib/anchor/anchor-jail"
  [[ -f "$A/bin/anchor-agent" ]] && install -D -m 0755 "$A/bin/anchor-agent" "$stage/usr/lib/anchor/anchor-agent"
  [[ -f "$A/bin/anchorctl" ]] && install -m 0755 "$A/bin/anchorctl" "$stage/usr/bin/anchorctl"
  # The operator shell (bay0.shell=1): the arm64 busybox, one symlink per applet (the list
  # from this machine's busybox, the same Debian build: checked like images/build.sh does).
  BUSYBOX="${ARM64_BUSYBOX:-$(scripts/arm64-busybox.sh)}" || die "no arm64 busybox (scripts/arm64-busybox.sh)"
  banner() { grep -a -o -m1 'BusyBox v[^)]*)' "$1" | head -n 1; }
  [[ -n "$(banner "$BUSYBOX")" && "$(banner "$BUSYBOX")" == "$(banner /bin/busybox)" ]] ||
    die "$BUSYBOX and /bin/busybox are different builds: cannot take the applet list from the host"
  mkdir -p "$stage/bin"
  install -m 0755 "$BUSYBOX" "$stage/bin/busybox"
  # What the operator shell reads at its start ($ENV): bay0/operator/operator.sh.
  install -D -m 0644 bay0/operator/operator.sh "$stage/etc/anchor/operator.sh"
  for applet in $(/bin/busybox --list | LC_ALL=C sort); do
    [[ "$applet" == busybox || -e "$stage/bin/$applet" ]] || ln -s busybox "$stage/bin/$applet"
  done
  mkdir -p "$stage/etc/anchor/policies"
  for f in policies/*.toml ${EXTRA_POLICIES:+"$EXTRA_POLICIES"/*.toml}; do
    install -m 0644 "$f" "$stage/etc/anchor/policies/"
  done
else
  OUT="${OUT:-$ANCHOR_CACHE/systest/arm64/initramfs-nested.cpio.gz}"
  BUSYBOX="${ARM64_BUSYBOX:-$(scripts/arm64-busybox.sh)}" || die "no arm64 busybox (scripts/arm64-busybox.sh)"
  is_static "$BUSYBOX" || die "$BUSYBOX is not static"
  mkdir -p "$stage/bin" "$stage/usr/lib/anchor/guests"
  install -m 0755 "$BUSYBOX" "$stage/bin/busybox"
  for a in sh mount cat sed grep ls sleep echo kill timeout poweroff head tail wc cut tr seq; do
    ln -s busybox "$stage/bin/$a"
  done
  obj=$(mktemp -d); trap 'rm -rf "$stage" "$obj"' EXIT
  n=0
  for c in boot reset abuse nisv smp wfi psci; do
    n=$((n + 1))
    aarch64-linux-gnu-as --defsym CASE=$n -o "$obj/$c.o" "$HERE/arm64/guest.S" ||
      die "assembling guest case $c (binutils-aarch64-linux-gnu)"
    aarch64-linux-gnu-ld -Ttext=0x80000000 -o "$obj/$c.elf" "$obj/$c.o"
    aarch64-linux-gnu-objcopy -O binary "$obj/$c.elf" "$stage/usr/lib/anchor/guests/$c.img"
  done
  # anchor-vmm with the test-only `--seccomp-test-trigger` (a forbidden syscall on the VMM
  # thread once its filter is in): proves the aarch64 filters kill, not only load. Own
  # target dir, so the release binaries are never built with the feature.
  trig="$(scripts/cargo-target.sh aarch64-seccomp-trigger)"
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" CARGO_TARGET_DIR="$trig" \
    cargo build --quiet --release --locked --target aarch64-unknown-linux-gnu -p anchor-vmm \
    --features seccomp-test-trigger || die "building the seccomp-trigger anchor-vmm for aarch64"
  install -m 0755 "$trig/aarch64-unknown-linux-gnu/release/anchor-vmm" "$stage/usr/bin/anchor-vmm-seccomp-trigger"
  # Not an Image: the hostile-kernel case feeds anchor-vmm an ELF.
  cp "$obj/boot.elf" "$stage/usr/lib/anchor/guests/not-an-image.elf"
  cat > "$stage/init" <<'EOF'
#!/bin/sh
# TEST-ONLY /init of the arm64 anchor host (tests/system/mk-arm64-initramfs.sh --nested).
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
up() { cut -d' ' -f1 /proc/uptime; }
if [ -c /dev/kvm ]; then echo "arm64-init: /dev/kvm present"; else echo "arm64-init: /dev/kvm absent"; fi
arg() { sed -n "s/.*$1=\([a-z0-9_-]*\).*/\1/p" /proc/cmdline; }
case_=$(arg arm64.case)
G=/usr/lib/anchor/guests
# run NAME TIMEOUT ANCHOR-VMM-ARGS...: one guest, its serial on our console, then its status.
# (TIMEOUT is hang detection only: a case takes seconds, TCG on a loaded machine much longer.)
run() {
  name=$1; t=$2; shift 2
  timeout "$t" anchor-vmm --serial file:/tmp/$name.serial "$@" </dev/null 2>/tmp/$name.err
  rc=$?
  sed "s/^/[$name] /" /tmp/$name.serial | head -n 40
  sed "s/^/[$name stderr] /" /tmp/$name.err | head -n 20
  echo "arm64-case: $name exit=$rc serial_bytes=$(wc -c < /tmp/$name.serial)"
}
if [ "$case_" = guests ]; then
  run boot 300 --kernel $G/boot.img --mem-mib 32
  run reset 300 --kernel $G/reset.img --mem-mib 32
  run abuse 300 --kernel $G/abuse.img --mem-mib 32 --disk /usr/lib/anchor/images/base.squashfs,ro
  run nisv 300 --kernel $G/nisv.img --mem-mib 32 --disk /usr/lib/anchor/images/base.squashfs,ro
  run smp 300 --kernel $G/smp.img --mem-mib 32 --vcpus 2
  run psci 300 --kernel $G/psci.img --mem-mib 32
  run notimage 300 --kernel $G/not-an-image.elf --mem-mib 32
  run protected 300 --kernel $G/boot.img --mem-mib 32 --vm-type protected
  # The VMM thread's filter kills the process on a forbidden syscall (SIGSYS: 128 + 31).
  anchor-vmm-seccomp-trigger --kernel $G/wfi.img --mem-mib 32 --serial file:/tmp/trigger.serial \
    --seccomp-test-trigger </dev/null 2>/tmp/trigger.err
  echo "arm64-case: seccomp-trigger exit=$?"
  # A running VMM: every thread under its seccomp filter, and the guest asleep in WFI.
  anchor-vmm --kernel $G/wfi.img --mem-mib 32 --vcpus 2 --serial file:/tmp/wfi.serial </dev/null 2>/tmp/wfi.err &
  vmm=$!
  # Hang detection only (TCG on a loaded machine can take long): the guest says when it
  # sleeps; only then do all its threads exist and wait.
  slept=no
  for i in $(seq 1 300); do grep -q sleeping /tmp/wfi.serial 2>/dev/null && { slept=yes; break; }; sleep 1; done
  echo "arm64-case: wfi guest asleep=$slept"
  sleep 1
  for t in /proc/$vmm/task/*; do
    echo "arm64-case: wfi thread $(cat $t/comm) $(grep '^Seccomp:' $t/status | tr -d '\t') state=$(cut -d' ' -f3 $t/stat)"
  done
  echo "arm64-case: wfi cpu_ticks=$(cut -d' ' -f14,15 /proc/$vmm/stat)"
  kill $vmm; wait $vmm; echo "arm64-case: wfi killed exit=$?"
elif [ "$case_" = gicv2 ]; then
  # The host's GIC is a GICv2 (QEMU virt gic-version=2): anchor-vmm falls back to an
  # in-kernel GICv2, which serves at most 8 vcpus.
  run boot 300 --kernel $G/boot.img --mem-mib 32
  run smp 300 --kernel $G/smp.img --mem-mib 32 --vcpus 2
  run psci 300 --kernel $G/psci.img --mem-mib 32
  run eight 300 --kernel $G/boot.img --mem-mib 32 --vcpus 8
  run nine 300 --kernel $G/boot.img --mem-mib 32 --vcpus 9
  # A real room: its interrupts (UART, virtio-blk root) go through the GICv2.
  run room 600 --kernel /usr/lib/anchor/kernel/Image --disk /usr/lib/anchor/images/base.squashfs,ro \
    --mem-mib 128 --vcpus 2 \
    --cmdline "console=ttyS0 quiet panic=-1 root=/dev/vda ro rootfstype=squashfs init=/sbin/init anchor.room=base anchor.shell=off"
elif [ "$case_" = room ]; then
  vt=$(arg arm64.vmtype); [ -n "$vt" ] || vt=ordinary
  echo "arm64-init: starting anchor-vmm at $(up) s (room base, --vm-type $vt)"
  anchor-vmm --kernel /usr/lib/anchor/kernel/Image --disk /usr/lib/anchor/images/base.squashfs,ro \
    --mem-mib 128 --vm-type "$vt" \
    --cmdline "console=ttyS0 quiet panic=-1 root=/dev/vda ro rootfstype=squashfs init=/sbin/init anchor.room=base anchor.shell=off" </dev/null
  echo "arm64-init: anchor-vmm exited with status $? at $(up) s"
fi
echo "arm64-init: done"
poweroff -f
EOF
  chmod 0755 "$stage/init"
fi

mkdir -p "$(dirname "$OUT")"
if [[ $(id -u) -eq 0 ]]; then
  mknod -m 0600 "$stage/dev/console" c 5 1
  mknod -m 0666 "$stage/dev/null" c 1 3
fi
cpio_stage "$stage" | gzip -n -6 > "$OUT.tmp.$$"
mv "$OUT.tmp.$$" "$OUT"
printf 'mk-arm64-initramfs: %s %s (%d bytes)\n' "$MODE" "$OUT" "$(stat -c %s "$OUT")"
