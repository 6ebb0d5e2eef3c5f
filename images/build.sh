#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Build the room images: read-only SquashFS files (file data stored uncompressed,
# metadata zstd), reproducible (the same inputs give the same bytes), one per flavour
# described in images/flavours/*.toml.
#
#   images/build.sh [--arch x86_64|aarch64] [FLAVOUR...]   (default: x86_64, every flavour)
#
# Layout of every image: busybox (static, all applets linked), anchor-agent as
# /sbin/init, /etc basics, empty mount points for /proc /sys /dev and the tmpfs
# mounts the agent makes (/tmp /run /var /home /root), and the escape-resistance suite
# (/usr/lib/anchor/escape/: escape.sh and its static probe; tests/escape/), so any room
# can check its own walls. A flavour adds programs from the build machine (`tools`,
# copied with their shared libraries) and data files.
#
# Output: $ANCHOR_OUT/images/<flavour>.squashfs, cached in $ANCHOR_CACHE/images keyed
# by the hash of the staged tree + mksquashfs version + options: a second run is a
# no-op. Inputs: ANCHOR_AGENT (default $ANCHOR_OUT/bin/anchor-agent, built by
# scripts/build-static.sh), ANCHOR_ESCAPE_PROBE (default $ANCHOR_OUT/bin/anchor-escape-probe,
# likewise), BUSYBOX (default /bin/busybox, Debian busybox-static), SOURCE_DATE_EPOCH
# (default 0: every timestamp in the image).
#
# --arch aarch64: the same layout for arm64 rooms, with the arm64 agent (default
# $ANCHOR_OUT/aarch64/bin/anchor-agent, scripts/build-static.sh aarch64) and Debian's
# arm64 busybox-static (default $ANCHOR_CACHE/arm64/busybox, scripts/arm64-busybox.sh),
# and the arm64 escape probe (default $ANCHOR_OUT/aarch64/bin/anchor-escape-probe),
# into $ANCHOR_OUT/aarch64/images/. Flavours that copy tools from this (x86_64) machine
# cannot be built for arm64 and are refused by name; the default list skips them.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
: "${ANCHOR_CACHE:=/var/cache/anchor-os}"
: "${ANCHOR_OUT:=$ANCHOR_CACHE/out}"
: "${SOURCE_DATE_EPOCH:=0}"
export SOURCE_DATE_EPOCH

die() { echo "images: ERROR: $*" >&2; exit 1; }
log() { echo "images: $*" >&2; }

ARCH=x86_64
if [[ "${1:-}" == "--arch" ]]; then
    ARCH="${2:?--arch needs x86_64 or aarch64}"
    shift 2
fi
case "$ARCH" in
    x86_64)
        : "${ANCHOR_AGENT:=$ANCHOR_OUT/bin/anchor-agent}"
        : "${ANCHOR_ESCAPE_PROBE:=$ANCHOR_OUT/bin/anchor-escape-probe}"
        : "${BUSYBOX:=/bin/busybox}"
        IMG_OUT="$ANCHOR_OUT/images"
        IMG_TAG=""
        is_dynamic() { ldd "$1" 2>&1 | grep -q '=>'; }
        ;;
    aarch64 | arm64)
        ARCH=aarch64
        : "${ANCHOR_AGENT:=$ANCHOR_OUT/aarch64/bin/anchor-agent}"
        : "${ANCHOR_ESCAPE_PROBE:=$ANCHOR_OUT/aarch64/bin/anchor-escape-probe}"
        : "${BUSYBOX:=$ANCHOR_CACHE/arm64/busybox}"
        IMG_OUT="$ANCHOR_OUT/aarch64/images"
        IMG_TAG="aarch64-"
        command -v aarch64-linux-gnu-readelf >/dev/null ||
            die "aarch64-linux-gnu-readelf not found (apt-get install binutils-aarch64-linux-gnu)"
        is_dynamic() { aarch64-linux-gnu-readelf -l "$1" | grep -q 'program interpreter'; }
        ;;
    *) die "unknown --arch '$ARCH' (x86_64 or aarch64)" ;;
esac

command -v mksquashfs >/dev/null || die "mksquashfs not found (apt-get install squashfs-tools)"
command -v python3 >/dev/null || die "python3 not found (needed to read the TOML manifests)"
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX not found (x86_64: apt-get install busybox-static; aarch64: scripts/arm64-busybox.sh)"
if is_dynamic "$BUSYBOX"; then die "$BUSYBOX is not static (need busybox-static)"; fi
[[ -x "$ANCHOR_AGENT" ]] || die "agent $ANCHOR_AGENT not found: run scripts/build-static.sh $ARCH (or set ANCHOR_AGENT)"
if is_dynamic "$ANCHOR_AGENT"; then die "$ANCHOR_AGENT is dynamically linked"; fi
ESCAPE_SCRIPT="$here/../tests/escape/escape.sh"
[[ -x "$ANCHOR_ESCAPE_PROBE" ]] || die "escape probe $ANCHOR_ESCAPE_PROBE not found: run scripts/build-static.sh $ARCH (or set ANCHOR_ESCAPE_PROBE)"
if is_dynamic "$ANCHOR_ESCAPE_PROBE"; then die "$ANCHOR_ESCAPE_PROBE is dynamically linked"; fi
[[ -f "$ESCAPE_SCRIPT" ]] || die "$ESCAPE_SCRIPT not found"

# The applet list (one symlink per applet). A foreign busybox cannot run here, so for
# arm64 the list comes from this machine's busybox-static, which must be the very same
# Debian build (checked on the version banner both binaries carry).
banner() { grep -a -o -m1 'BusyBox v[^)]*)' "$1" | head -n 1; }
if [[ "$ARCH" == x86_64 ]]; then
    APPLETS="$("$BUSYBOX" --list-full)"
else
    [[ -x /bin/busybox ]] || die "/bin/busybox (busybox-static) is needed for the applet list"
    [[ "$(banner "$BUSYBOX")" == "$(banner /bin/busybox)" && -n "$(banner "$BUSYBOX")" ]] ||
        die "$BUSYBOX ($(banner "$BUSYBOX")) and /bin/busybox ($(banner /bin/busybox)) are different builds: cannot take the applet list from the host"
    APPLETS="$(/bin/busybox --list-full)"
fi

# File data (-noD) and fragments (-noF) are stored uncompressed: every room start mounts
# its image afresh, so each page a room touches first is read and, if compressed,
# decompressed anew; zstd-19 decompression was ~4 ms of CPU per namespace room start
# (the agent's and the shell's first pages), on the path to the first prompt. The cost:
# an image about twice the size (base 2.0 -> 4.6 MB on disk; gzip of the initramfs that
# carries them barely changes). Metadata stays zstd (small, read once per mount).
MKSQ_OPTS=(-noappend -no-progress -quiet -reproducible -all-root -no-xattrs
           -comp zstd -Xcompression-level 19 -noD -noF -b 131072
           -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH")

# Reads a manifest; prints shell assignments (values quoted with printf %q by python).
read_manifest() {
    python3 - "$1" <<'PY'
import sys, tomllib, shlex
path = sys.argv[1]
with open(path, "rb") as f:
    m = tomllib.load(f)
allowed = {"description", "motd", "tools", "data"}
unknown = set(m) - allowed
if unknown:
    sys.exit(f"{path}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
def strlist(k):
    v = m.get(k, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        sys.exit(f"{path}: {k} must be a list of strings")
    return v
for k in ("description", "motd"):
    if not isinstance(m.get(k), str):
        sys.exit(f"{path}: {k} must be a string")
for t in strlist("tools"):
    if "/" in t or not t:
        sys.exit(f"{path}: tools entries are program names, got {t!r}")
for d in strlist("data"):
    if not d.startswith("/") or ".." in d.split("/"):
        sys.exit(f"{path}: data entries are absolute paths without '..', got {d!r}")
print("M_DESCRIPTION=" + shlex.quote(m["description"]))
print("M_MOTD=" + shlex.quote(m["motd"]))
print("M_TOOLS=(" + " ".join(shlex.quote(t) for t in strlist("tools")) + ")")
print("M_DATA=(" + " ".join(shlex.quote(d) for d in strlist("data")) + ")")
PY
}

# Copies host file $1 (following symlinks) to the same path under $2.
copy_host_file() {
    local src="$1" root="$2"
    [[ -e "$src" ]] || die "$src not found on this machine"
    mkdir -p "$root$(dirname "$src")"
    cp -L "$src" "$root$src"
}

# Copies program $1 (from PATH) and every shared library it needs into $2.
copy_tool() {
    local name="$1" root="$2" path lib
    path="$(command -v "$name")" || die "tool $name not found on this machine"
    path="$(readlink -f "$path")"
    copy_host_file "$path" "$root"
    # Put it where a shell finds it: /usr/bin/<name> (the real path may differ).
    if [[ "$path" != "/usr/bin/$name" ]]; then
        mkdir -p "$root/usr/bin"
        cp -L "$path" "$root/usr/bin/$name"
    fi
    # ldd prints "libx.so => /path (addr)" and "/lib64/ld-linux-x86-64.so.2 (addr)".
    while read -r lib; do
        [[ -n "$lib" && -e "$root$lib" ]] || { [[ -n "$lib" ]] && copy_host_file "$lib" "$root"; }
    done < <(ldd "$path" 2>/dev/null | awk '/=> \//{print $3} /^\t\//{print $1}' | sort -u)
}

stage_flavour() {
    local flavour="$1" root="$2" applet
    # shellcheck disable=SC1090
    eval "$(read_manifest "$here/flavours/$flavour.toml")" || die "bad manifest $flavour.toml"

    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,var,home,root,mnt,persist}
    install -m 0755 "$BUSYBOX" "$root/bin/busybox"
    # One symlink per applet (one python process instead of hundreds of ln/mkdir).
    printf '%s\n' "$APPLETS" | python3 -c '
import os, sys
root = sys.argv[1]
for applet in sorted(set(sys.stdin.read().split())):
    if applet in ("bin/busybox", "sbin/init", "linuxrc") or applet.startswith("/") or ".." in applet:
        continue
    dst = os.path.join(root, applet)
    if os.path.lexists(dst):
        continue
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.symlink("/bin/busybox", dst)
' "$root"
    install -m 0755 "$ANCHOR_AGENT" "$root/sbin/init"
    # The courier client is the agent called as `courier` (courier send FILE --to ROOM).
    ln -s /sbin/init "$root/usr/bin/courier"
    mkdir -p "$root/usr/lib/anchor/escape"
    install -m 0755 "$ESCAPE_SCRIPT" "$root/usr/lib/anchor/escape/escape.sh"
    install -m 0755 "$ANCHOR_ESCAPE_PROBE" "$root/usr/lib/anchor/escape/anchor-escape-probe"

    for t in "${M_TOOLS[@]}"; do
        rm -f "$root/usr/bin/$t" "$root/bin/$t"
        copy_tool "$t" "$root"
    done
    for d in "${M_DATA[@]}"; do copy_host_file "$d" "$root"; done

    # `room` (uid 1000) is who the console shell runs as unless the policy makes the room
    # privileged (tools/anchor-agent: ROOM_UID).
    printf 'root:x:0:0:root:/root:/bin/sh\nroom:x:1000:1000:room:/home/room:/bin/sh\n' >"$root/etc/passwd"
    # The resolver of a room with a network (the agent writes it; /etc is read-only).
    ln -s /run/resolv.conf "$root/etc/resolv.conf"
    printf 'root:x:0:\nroom:x:1000:\n' >"$root/etc/group"
    printf '%s\n' "$M_MOTD" >"$root/etc/motd"
    printf '%s\n' "$flavour" >"$root/etc/anchor-flavour"
    cat >"$root/etc/os-release" <<EOF
NAME="Anchor OS room"
ID=anchor-room
VARIANT_ID=$flavour
PRETTY_NAME="Anchor OS $flavour room"
EOF
    cat >"$root/etc/profile" <<'EOF'
export PS1='\h:\w\$ '
# The shell's own builtins print the motd: no process is started before the first prompt.
[ -r /etc/motd ] && while IFS= read -r l || [ -n "$l" ]; do printf '%s\n' "$l"; done </etc/motd
# busybox's reboot signals PID 1 (SIGTERM), which the agent ignores: a room is not
# restarted from inside (exit closes it; so do poweroff and halt where the shell is root).
reboot() {
    echo "reboot: a room does not restart itself: exit closes it; on the anchor host, anchorctl room reset $(hostname) opens it again, fresh" >&2
    return 1
}
# busybox's poweroff and halt signal PID 1, which only the room's root may; the room's
# user closes the room just as well by leaving this login shell (the agent then ends it).
if [ "$USER" != root ]; then
    poweroff() { exit 0; }
    halt() { exit 0; }
fi
EOF
    # Normalise modes: nothing group/world-writable except /tmp; /root private.
    chmod -R u+rwX,go+rX,go-w "$root"
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
    find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# Hash of everything that determines the image bytes.
input_key() {
    local root="$1"
    {
        mksquashfs -version 2>&1 | head -n 1
        printf '%s\n' "${MKSQ_OPTS[@]}"
        tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
            --format=gnu -C "$root" -cf - .
    } | sha256sum | cut -c1-16
}

build_flavour() {
    local flavour="$1" stage key cached out start
    [[ -f "$here/flavours/$flavour.toml" ]] || die "no manifest images/flavours/$flavour.toml"
    start="$(date +%s%N)"
    mkdir -p "$ANCHOR_CACHE/images" "$IMG_OUT"
    stage="$(mktemp -d "$ANCHOR_CACHE/images/.stage-$flavour.XXXXXX")"
    trap 'rm -rf "$stage"' RETURN
    stage_flavour "$flavour" "$stage/root"
    key="$(input_key "$stage/root")"
    cached="$ANCHOR_CACHE/images/$flavour-$IMG_TAG$key.squashfs"
    out="$IMG_OUT/$flavour.squashfs"
    if [[ -f "$cached" ]]; then
        ln -f "$cached" "$out" 2>/dev/null || cp -f "$cached" "$out"
        printf 'images: %s%-5s %9d bytes  cached (%s)\n' "$IMG_TAG" "$flavour" "$(stat -c %s "$out")" "$key"
        return 0
    fi
    # mksquashfs refuses SOURCE_DATE_EPOCH together with -all-time/-mkfs-time.
    env -u SOURCE_DATE_EPOCH nice -n 10 mksquashfs "$stage/root" "$stage/img" "${MKSQ_OPTS[@]}" >/dev/null \
        || die "mksquashfs failed for $flavour"
    sync "$stage/img" # on disk before it is renamed into the cache (a power cut)
    mv "$stage/img" "$cached"
    ln -f "$cached" "$out" 2>/dev/null || cp -f "$cached" "$out"
    printf 'images: %s%-5s %9d bytes  built in %d ms (%s) sha256 %s\n' "$IMG_TAG" "$flavour" \
        "$(stat -c %s "$out")" "$(( ($(date +%s%N) - start) / 1000000 ))" "$key" \
        "$(sha256sum "$out" | cut -c1-16)"
}

# Whether a flavour copies programs from this machine (x86_64 binaries).
has_host_tools() {
    eval "$(read_manifest "$here/flavours/$1.toml")" || die "bad manifest $1.toml"
    [[ ${#M_TOOLS[@]} -gt 0 ]]
}

flavours=("$@")
if [[ ${#flavours[@]} -eq 0 ]]; then
    for f in "$here"/flavours/*.toml; do
        f="$(basename "$f" .toml)"
        if [[ "$ARCH" != x86_64 ]] && has_host_tools "$f"; then
            log "$ARCH: skipping flavour $f (it copies x86_64 tools from this machine)"
            continue
        fi
        flavours+=("$f")
    done
fi
if [[ "$ARCH" != x86_64 ]]; then
    for f in "${flavours[@]}"; do
        [[ -f "$here/flavours/$f.toml" ]] || die "no manifest images/flavours/$f.toml"
        if has_host_tools "$f"; then die "flavour $f copies x86_64 tools from this machine: it cannot be built for $ARCH"; fi
    done
fi
for f in "${flavours[@]}"; do build_flavour "$f"; done
