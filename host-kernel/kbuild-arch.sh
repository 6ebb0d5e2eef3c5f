#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Cross-architecture kernel builds (arm64 today), sourced after kbuild-common.sh by
# host-kernel/build-arm64.sh and guest-kernel/build-arm64.sh. It reuses every helper
# of kbuild-common.sh (source tarball, extraction, fragment verification, publishing,
# the one-kernel-build-at-a-time lock) and only replaces kbuild_main, so that
# kbuild-common.sh -- part of every x86_64 kernel's cache key -- stays untouched and
# the x86_64 kernels keep their keys.
#
# The caller sets the KB_* variables of kbuild-common.sh plus:
#   KB_ARCH      kernel ARCH (arm64)
#   KB_CROSS     CROSS_COMPILE prefix (aarch64-linux-gnu-)
# and calls kbuild_arch_main. The cache key covers the arch, the source version, the
# cross compiler's version, the target, the fragment, the calling script, this file
# and kbuild-common.sh. Results: $ANCHOR_CACHE/kernels/$KB_NAME-$KB_ARCH-<key>/.

kbuild_arch_main() {
    ANCHOR_CACHE="${ANCHOR_CACHE:-/var/cache/anchor-os}"
    ANCHOR_OUT="${ANCHOR_OUT:-$ANCHOR_CACHE/out}"
    jobs="${ANCHOR_KJOBS:-2}"
    arch="$KB_ARCH"
    KB_ARCH_LIB="$(cd "$(dirname "$KB_COMMON")" && pwd)/kbuild-arch.sh"

    [ -f "$KB_FRAGMENT" ] || kb_die "fragment $KB_FRAGMENT not found"
    mkdir -p "$ANCHOR_OUT/$(dirname "$KB_OUTNAME")"
    command -v "${KB_CROSS}gcc" >/dev/null 2>&1 ||
        kb_die "${KB_CROSS}gcc not found: apt-get install gcc-aarch64-linux-gnu (scripts/setup.sh)"
    tarball="$(kb_source_tarball)"
    version="$(kb_source_version "$tarball")"
    gccv="$("${KB_CROSS}gcc" --version | head -n 1)"

    key="$( {
        printf 'arch=%s\nsource=linux-source-6.1 %s\ngcc=%s\ntarget=%s\n' \
            "$arch" "$version" "$gccv" "$KB_TARGET"
        cat "$KB_FRAGMENT" "$KB_SCRIPT" "$KB_COMMON" "$KB_ARCH_LIB"
    } | sha256sum | cut -c1-16)"
    cdir="$ANCHOR_CACHE/kernels/$KB_NAME-$arch-$key"
    artifact_name="$(basename "$KB_ARTIFACT")"

    if [ -f "$cdir/$artifact_name" ]; then
        kb_publish "$cdir/$artifact_name"
        kb_log "cached ($cdir), $ANCHOR_OUT/$KB_OUTNAME is $(stat -c %s "$cdir/$artifact_name") bytes"
        return 0
    fi

    mkdir -p "$ANCHOR_CACHE/locks"
    exec 9>"$ANCHOR_CACHE/locks/kernel-build.lock"
    if ! flock -n 9; then
        kb_log "another kernel build is running; waiting for it"
        flock 9
    fi
    if [ -f "$cdir/$artifact_name" ]; then
        kb_publish "$cdir/$artifact_name"
        kb_log "cached ($cdir)"
        return 0
    fi

    start="$(kb_now)"
    src="$(kb_extract "$tarball" "$version")"
    obj="$ANCHOR_CACHE/kbuild/$KB_NAME-$arch"
    mkdir -p "$obj"

    export KBUILD_BUILD_USER=anchor KBUILD_BUILD_HOST=anchor-build
    export KBUILD_BUILD_TIMESTAMP="${SOURCE_DATE_EPOCH:+@$SOURCE_DATE_EPOCH}"
    [ -n "$KBUILD_BUILD_TIMESTAMP" ] || KBUILD_BUILD_TIMESTAMP="1970-01-01 00:00:00 UTC"

    mk() { nice -n 10 make -s -C "$src" O="$obj" ARCH="$arch" CROSS_COMPILE="$KB_CROSS" "$@"; }

    kb_log "configuring ($arch): tinyconfig + $(basename "$KB_FRAGMENT") (key $key)"
    rm -f "$obj/.config"
    mk tinyconfig >"$obj/config.log" 2>&1 || { cat "$obj/config.log" >&2; kb_die "tinyconfig failed"; }
    cat "$KB_FRAGMENT" >>"$obj/.config"
    mk olddefconfig >"$obj/olddefconfig.log" 2>&1 || { cat "$obj/olddefconfig.log" >&2; kb_die "olddefconfig failed"; }
    kb_verify_config "$KB_FRAGMENT" "$obj/.config"
    kb_log "all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set)' "$KB_FRAGMENT") fragment options verified"

    kb_log "building $KB_TARGET ($arch) with -j$jobs (nice 10)"
    log="$obj/build.log"
    if ! mk -j"$jobs" "$KB_TARGET" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        kb_die "kernel build failed (full log: $log)"
    fi
    [ -f "$obj/$KB_ARTIFACT" ] || kb_die "build produced no $KB_ARTIFACT"

    mkdir -p "$ANCHOR_CACHE/kernels"
    tmpc="$(mktemp -d "$ANCHOR_CACHE/kernels/.tmp.XXXXXX")"
    chmod 0755 "$tmpc"
    cp "$obj/$KB_ARTIFACT" "$tmpc/$artifact_name"
    cp "$obj/.config" "$tmpc/config"
    end="$(kb_now)"
    printf 'built=%s seconds=%s source=%s arch=%s\n' "$(date -u +%FT%TZ)" "$((end - start))" \
        "$version" "$arch" >"$tmpc/BUILDINFO"
    sync "$tmpc"/* # on disk before they are renamed into the cache (a power cut)
    rm -rf "$cdir"
    mv "$tmpc" "$cdir"
    kb_publish "$cdir/$artifact_name"
    kb_log "built in $((end - start)) s: $ANCHOR_OUT/$KB_OUTNAME is $(stat -c %s "$cdir/$artifact_name") bytes"
}
