#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Shared by host-kernel/build.sh and guest-kernel/build.sh (sourced, not run).
# Builds one kernel from Debian's linux-source-6.1 with a config fragment applied
# over `make tinyconfig`, verifies that every fragment line survived
# `make olddefconfig`, and caches the result keyed by the hash of its inputs.
#
# The caller sets, then calls kbuild_main:
#   KB_NAME      short name: "host" or "guest" (cache and O= dir names)
#   KB_FRAGMENT  path of the config fragment
#   KB_TARGET    make target: bzImage or vmlinux
#   KB_ARTIFACT  file to keep, relative to the O= dir (arch/x86/boot/bzImage, vmlinux)
#   KB_OUTNAME   name under $ANCHOR_OUT (host-bzImage, guest-vmlinux)
#   KB_SCRIPT    path of the calling build script (part of the cache key)
#
# Environment: ANCHOR_CACHE (default /var/cache/anchor-os), ANCHOR_OUT (default
# $ANCHOR_CACHE/out), ANCHOR_KJOBS (default 2), ANCHOR_KSRC_TARBALL (default
# /usr/src/linux-source-6.1.tar.xz).

set -eu

KB_COMMON="$(cd "$(dirname "$0")/../host-kernel" && pwd)/kbuild-common.sh"

kb_log() { printf '%s-kernel: %s\n' "$KB_NAME" "$*" >&2; }
kb_die() { kb_log "ERROR: $*"; exit 1; }

kb_now() { date +%s; }

# Ensure the source tarball exists (install the Debian package if we are root).
kb_source_tarball() {
    tarball="${ANCHOR_KSRC_TARBALL:-/usr/src/linux-source-6.1.tar.xz}"
    if [ ! -f "$tarball" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            kb_log "installing linux-source-6.1 (missing $tarball)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y linux-source-6.1 >&2 \
                || kb_die "apt-get install linux-source-6.1 failed"
        fi
    fi
    [ -f "$tarball" ] || kb_die "kernel source $tarball not found: apt-get install linux-source-6.1"
    printf '%s\n' "$tarball"
}

kb_source_version() {
    v="$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || true)"
    [ -n "$v" ] || v="unpackaged-$(stat -c %s-%Y "$1")"
    printf '%s\n' "$v"
}

# Extract the source once into $ANCHOR_CACHE/src/linux-source-6.1-<version>.
# Atomic: extract into a temporary directory, then rename.
kb_extract() {
    tarball="$1"
    version="$2"
    dest="$ANCHOR_CACHE/src/linux-source-6.1-$version"
    if [ -f "$dest/.anchor-extracted" ]; then
        printf '%s\n' "$dest"
        return 0
    fi
    mkdir -p "$ANCHOR_CACHE/src"
    tmp="$(mktemp -d "$ANCHOR_CACHE/src/.extract.XXXXXX")"
    kb_log "extracting $tarball (once)"
    nice -n 10 tar -xJf "$tarball" -C "$tmp" || { rm -rf "$tmp"; kb_die "extracting $tarball failed"; }
    [ -f "$tmp/linux-source-6.1/Makefile" ] || { rm -rf "$tmp"; kb_die "unexpected tarball layout"; }
    touch "$tmp/linux-source-6.1/.anchor-extracted"
    rm -rf "$dest"
    mv "$tmp/linux-source-6.1" "$dest"
    rmdir "$tmp"
    printf '%s\n' "$dest"
}

# Every line of the fragment must hold in .config:
#   CONFIG_X=v            -> the very same line is in .config
#   # CONFIG_X is not set -> no CONFIG_X= line in .config
kb_verify_config() {
    fragment="$1"
    config="$2"
    bad=0
    while IFS= read -r line; do
        case "$line" in
            CONFIG_*=*)
                if ! grep -qxF -- "$line" "$config"; then
                    sym="${line%%=*}"
                    got="$(grep -E "^(# )?$sym[= ]" "$config" || true)"
                    kb_log "MISSING: wanted '$line', got '${got:-<absent: dependency not met>}'"
                    bad=$((bad + 1))
                fi
                ;;
            "# CONFIG_"*" is not set")
                sym="${line#\# }"
                sym="${sym%% is not set}"
                if grep -q "^$sym=" "$config"; then
                    kb_log "FORCED ON: wanted '$line', got '$(grep "^$sym=" "$config")'"
                    bad=$((bad + 1))
                fi
                ;;
        esac
    done <"$fragment"
    [ "$bad" -eq 0 ] || kb_die "$bad fragment option(s) did not end up as requested in $config"
}

# Publish $1 as $ANCHOR_OUT/$KB_OUTNAME (hard link; copy across filesystems).
kb_publish() {
    mkdir -p "$ANCHOR_OUT"
    ln -f "$1" "$ANCHOR_OUT/$KB_OUTNAME" 2>/dev/null || cp -f "$1" "$ANCHOR_OUT/$KB_OUTNAME"
}

kbuild_main() {
    ANCHOR_CACHE="${ANCHOR_CACHE:-/var/cache/anchor-os}"
    ANCHOR_OUT="${ANCHOR_OUT:-$ANCHOR_CACHE/out}"
    jobs="${ANCHOR_KJOBS:-2}"
    arch="x86_64"

    [ -f "$KB_FRAGMENT" ] || kb_die "fragment $KB_FRAGMENT not found"
    tarball="$(kb_source_tarball)"
    version="$(kb_source_version "$tarball")"
    gccv="$(gcc --version | head -n 1)"

    key="$( {
        printf 'arch=%s\nsource=linux-source-6.1 %s\ngcc=%s\ntarget=%s\n' \
            "$arch" "$version" "$gccv" "$KB_TARGET"
        cat "$KB_FRAGMENT" "$KB_SCRIPT" "$KB_COMMON"
    } | sha256sum | cut -c1-16)"
    cdir="$ANCHOR_CACHE/kernels/$KB_NAME-$key"
    artifact_name="$(basename "$KB_ARTIFACT")"

    if [ -f "$cdir/$artifact_name" ]; then
        kb_publish "$cdir/$artifact_name"
        kb_log "cached ($cdir), $ANCHOR_OUT/$KB_OUTNAME is $(stat -c %s "$cdir/$artifact_name") bytes"
        return 0
    fi

    # One kernel build at a time on this machine (host and guest share the lock).
    mkdir -p "$ANCHOR_CACHE/locks"
    exec 9>"$ANCHOR_CACHE/locks/kernel-build.lock"
    if ! flock -n 9; then
        kb_log "another kernel build is running; waiting for it"
        flock 9
    fi
    if [ -f "$cdir/$artifact_name" ]; then # built by whoever held the lock
        kb_publish "$cdir/$artifact_name"
        kb_log "cached ($cdir)"
        return 0
    fi

    start="$(kb_now)"
    src="$(kb_extract "$tarball" "$version")"
    obj="$ANCHOR_CACHE/kbuild/$KB_NAME-$arch"
    mkdir -p "$obj"

    # Reproducible-ish build metadata.
    export KBUILD_BUILD_USER=anchor KBUILD_BUILD_HOST=anchor-build
    export KBUILD_BUILD_TIMESTAMP="${SOURCE_DATE_EPOCH:+@$SOURCE_DATE_EPOCH}"
    [ -n "$KBUILD_BUILD_TIMESTAMP" ] || KBUILD_BUILD_TIMESTAMP="1970-01-01 00:00:00 UTC"

    mk() { nice -n 10 make -s -C "$src" O="$obj" ARCH="$arch" "$@"; }

    kb_log "configuring: tinyconfig + $(basename "$KB_FRAGMENT") (key $key)"
    rm -f "$obj/.config"
    mk tinyconfig >"$obj/config.log" 2>&1 || { cat "$obj/config.log" >&2; kb_die "tinyconfig failed"; }
    cat "$KB_FRAGMENT" >>"$obj/.config"
    mk olddefconfig >"$obj/olddefconfig.log" 2>&1 || { cat "$obj/olddefconfig.log" >&2; kb_die "olddefconfig failed"; }
    kb_verify_config "$KB_FRAGMENT" "$obj/.config"
    kb_log "all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set)' "$KB_FRAGMENT") fragment options verified"

    kb_log "building $KB_TARGET with -j$jobs (nice 10)"
    log="$obj/build.log"
    if ! mk -j"$jobs" "$KB_TARGET" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        kb_die "kernel build failed (full log: $log)"
    fi
    [ -f "$obj/$KB_ARTIFACT" ] || kb_die "build produced no $KB_ARTIFACT"

    tmpc="$(mktemp -d "$ANCHOR_CACHE/kernels/.tmp.XXXXXX" 2>/dev/null || { mkdir -p "$ANCHOR_CACHE/kernels" && mktemp -d "$ANCHOR_CACHE/kernels/.tmp.XXXXXX"; })"
    chmod 0755 "$tmpc"
    cp "$obj/$KB_ARTIFACT" "$tmpc/$artifact_name"
    cp "$obj/.config" "$tmpc/config"
    end="$(kb_now)"
    printf 'built=%s seconds=%s source=%s\n' "$(date -u +%FT%TZ)" "$((end - start))" "$version" >"$tmpc/BUILDINFO"
    sync "$tmpc"/* # on disk before they are renamed into the cache (a power cut)
    rm -rf "$cdir"
    mv "$tmpc" "$cdir"
    kb_publish "$cdir/$artifact_name"
    kb_log "built in $((end - start)) s: $ANCHOR_OUT/$KB_OUTNAME is $(stat -c %s "$cdir/$artifact_name") bytes"
}
