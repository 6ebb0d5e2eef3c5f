#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Anchor OS escape-resistance suite: run INSIDE a room (busybox sh, as the room's console
# user). Every attempt prints one line, `BLOCKED name: how` or `ESCAPED name: what
# worked`; the last line is `ESCAPE-SUITE done: N blocked, M escaped`. One attempt
# (linger) can only be judged from outside: it prints `LINGER ...` and the harness
# reports its verdict after the room has closed.
#
# Shipped in every room image as /usr/lib/anchor/escape/escape.sh, with its probe
# (anchor-escape-probe: the attempts a shell cannot make). Arguments (key=value, all
# optional; the harness passes what it knows about the host):
#   backend=namespaces|microvm   a microVM's kernel is the room's own (see the probe)
#   mem_mib=N      the room's memory: the memory attempt asks for N + 64 MiB
#   pids_max=N     the room's pids_max: the fork bomb must stop below it
#   host_pids=P,Q  pids of host processes (bay0, another room's jail or VMM)
#   marker=PATH    a file that exists only on the host
#   kmsg=TOKEN     a line the host wrote into its kernel log
#   port=N token=T a TCP service on the host's loopback that answers T
#                  (and, on TCP and UDP, on every address of the host: host-network)
#   hosts=A,B      the host's own IPv4 addresses (a room cannot learn them)
#   other=ROOM     another open room (its socket is the target)
#   control=PATH   bay0's control socket as the host sees it (default /run/anchor/control.sock)
#   abstract=NAME  an abstract Unix socket the host listens on
#   neighbour_read=PATH neighbour_lock=PATH   files of the image that another room of the
#                  same image reads over and over / holds an exclusive flock on (the
#                  harness starts it there: `anchor-escape-probe neighbour READ LOCK`)
#   dev_read=PATH dev_lock=PATH   device nodes another room reads over and over / holds an
#                  exclusive flock on (`anchor-escape-probe neighbour /dev/null /dev/zero`)
set -u
here=$(dirname "$0")
probe="$here/anchor-escape-probe"
backend=unknown mem_mib=0 pids_max=0 host_pids= marker=/nonexistent-host-marker
kmsg=no-kmsg-token port=0 token=no-token hosts= other=none abstract=anchor-escape-none
control=/run/anchor/control.sock
neighbour_read=/etc/anchor-flavour neighbour_lock=/etc/os-release
dev_read=/dev/null dev_lock=/dev/zero
for a in "$@"; do
    v=${a#*=}
    case "$a" in
        backend=*) backend=$v ;;
        mem_mib=*) mem_mib=$v ;;
        pids_max=*) pids_max=$v ;;
        host_pids=*) host_pids=$(echo "$v" | tr , ' ') ;;
        marker=*) marker=$v ;;
        kmsg=*) kmsg=$v ;;
        port=*) port=$v ;;
        token=*) token=$v ;;
        hosts=*) hosts=$(echo "$v" | tr , ' ') ;;
        other=*) other=$v ;;
        abstract=*) abstract=$v ;;
        control=*) control=$v ;;
        neighbour_read=*) neighbour_read=$v ;;
        neighbour_lock=*) neighbour_lock=$v ;;
        dev_read=*) dev_read=$v ;;
        dev_lock=*) dev_lock=$v ;;
        *) echo "escape.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done
own=
[ "$backend" = microvm ] && own=--own-kernel
cd /tmp || exit 1

log=/tmp/.escape-log
: >"$log"
# One line, in one write, to the console and to the log the summary counts.
say() {
    printf '%s\n' "$*"
    printf '%s\n' "$*" >>"$log"
}
# One probe attempt; a probe that fails to give a verdict counts as an escape.
p() {
    out=$("$probe" $own "$@" 2>&1)
    rc=$?
    if [ "$rc" -ne 0 ] || [ -z "$out" ]; then
        say "ESCAPED probe-$1: the probe gave no verdict (status $rc): $out"
        return
    fi
    echo "$out" | while IFS= read -r line; do say "$line"; done
}

say "ESCAPE-SUITE start: backend=$backend uid=$(id -u) room=$(hostname)"

# Who we are, who we see.
p capabilities
p host-pids $host_pids
# The /proc files of the processes we see that show a namespace's contents without a
# ptrace check (/proc/PID/net, /proc/PID/mountinfo): passt lives in the host's network
# namespace; none may show us the host's.
p proc-namespaces
p ptrace-host $host_pids
p ptrace-init
p host-file "$marker"

# The image and the mounts that hide the host.
p write-image
p remount-rw
p mount-proc
p mount-sysfs
p mount-tmpfs
p new-mount-api
p unshare
p setns
p clone-namespaces
p chroot-escape "$marker"
p pivot-root

# Host devices.
for d in kvm mem sda tty0 fb0 input; do p device "$d"; done

# The host kernel's dangerous doors.
p module
p kexec
p bpf
p perf
p userfaultfd
p keyctl
p open-by-handle
p proc-sys
p proc-self-write
p sys-write
p sysrq
p host-kernel-log "$kmsg"
p io-uring
p aio-exhaust
p compat-syscalls
p socket-families
p inet-protocols
p host-sync
p proc-interrupts
p host-inodes
p tty-inject
p tty-ldisc
p add-key
p name-to-handle
p quotactl
p rlimit-raise
p ns-owner
p image-watch "$neighbour_read"
p image-lock "$neighbour_lock"
p dev-watch "$dev_read"
p dev-lock "$dev_lock"
p anon-lock
p proc-locks

# The room's PID 1 (the agent holds bay0's umbilical): its memory and descriptors, a
# second umbilical, and the signals that would stop or kill it.
p init-memory
p umbilical
signal_init() {
    kill -STOP 1 2>/dev/null
    kill -KILL 1 2>/dev/null
    state=$(awk '/^State:/ { print $2 }' /proc/1/status 2>/dev/null)
    kill -CONT 1 2>/dev/null
    if [ -n "$state" ] && [ "$state" != T ] && [ "$state" != t ]; then
        say "BLOCKED signal-init: SIGSTOP and SIGKILL to PID 1 from the room did nothing (state $state)"
    else
        say "ESCAPED signal-init: PID 1 after SIGSTOP and SIGKILL: state ${state:-gone}"
    fi
}
signal_init

# The host's sockets and network.
p unix-socket control-socket /run/anchor/control.sock "$control"
p unix-socket other-room-socket "/run/anchor/rooms/$other/vsock_1024"
p abstract-socket "$abstract"
p host-loopback "$port" "$token"
# Through the room's network (eth0, where the policy grants one): passt's gateway and
# DNS addresses and the host's own; the egress rule lets none of them reach the host.
p host-network "$port" "$token" $hosts

# A setuid copy of the shell: uid 0 of a namespace room is an unprivileged host uid, and
# nothing in a room is mounted suid.
setuid() {
    d=/tmp/.escape-suid
    f=$d/busybox
    mkdir -p "$d"
    if ! cp /bin/busybox "$f" 2>/dev/null || ! chmod 4755 "$f" 2>/dev/null; then
        say "BLOCKED setuid-binary: cannot make a setuid copy of the shell in /tmp"
        rm -rf "$d"; return
    fi
    out=$("$f" sh -c 'grep -E "^(Uid|CapEff)" /proc/self/status; cat /proc/self/uid_map 2>/dev/null' 2>&1)
    rm -rf "$d"
    euid=$(echo "$out" | awk '/^Uid:/ { print $3 }')
    capeff=$(echo "$out" | awk '/^CapEff:/ { print $2 }')
    host=$(echo "$out" | awk -v u="$euid" '$1 ~ /^[0-9]+$/ && u >= $1 && u < $1 + $3 { print $2 + u - $1 }')
    suid=$(find / -xdev -perm -4000 2>/dev/null | head -n 3 | tr '\n' ' ')
    if ! [ -e /proc/self/uid_map ]; then
        host="none: the room's own kernel, no user namespaces"
    fi
    detail="the setuid copy ran with euid ${euid:-?} (host uid ${host:-unmapped}), CapEff ${capeff:-?}; setuid files in the image: ${suid:-none}"
    if [ -z "$euid" ] || [ "${capeff:-x}" != 0000000000000000 ] || [ "${host:-x}" = 0 ] || [ -n "$suid" ]; then
        say "ESCAPED setuid-binary: $detail ($out)"
    else
        say "BLOCKED setuid-binary: $detail"
    fi
}
setuid

# A crash must not reach a core dump helper of the host (a core_pattern pipe runs as host
# root, whatever the crashed process's core limit, unless that is exactly 1 byte): two
# children crash, with their core limit set to 0 and lifted; no core dump may be taken.
p core-dump

# A fork bomb: the room's pids limit must stop it. The bomb runs in a subshell (a
# failed fork ends only that shell); its children are killed with builtins only, since
# nothing can fork while the room is full.
forkbomb() {
    list=/tmp/.escape-pids
    : >"$list"
    ( i=0; while [ "$i" -lt $((pids_max + 64)) ]; do sleep 1000 & echo $! >>"$list"; i=$((i + 1)); done ) 2>/dev/null
    n=0
    while read -r pid; do kill -9 "$pid" 2>/dev/null; n=$((n + 1)); done <"$list"
    rm -f "$list"
    sleep 1
    if [ "$pids_max" -gt 0 ] && [ "$n" -lt "$pids_max" ]; then
        say "BLOCKED fork-bomb: fork failed after $n more processes (pids_max $pids_max); the room went on"
    else
        say "ESCAPED fork-bomb: started $n processes (pids_max $pids_max)"
    fi
}
forkbomb

# Memory past the room's limit: the allocating process is killed, the room goes on.
memory() {
    want=$(((mem_mib + 64) * 1048576))
    awk -v n="$want" 'BEGIN { s = "0123456789abcdef"; while (length(s) < n) s = s s; print "allocated"; }' >/dev/null 2>&1
    rc=$?
    if [ "$mem_mib" -gt 0 ] && [ "$rc" -ne 0 ]; then
        say "BLOCKED memory: the process asking for $((mem_mib + 64)) MiB in a $mem_mib MiB room was killed (status $rc); the room went on"
    else
        say "ESCAPED memory: allocated $((mem_mib + 64)) MiB in a $mem_mib MiB room (status $rc)"
    fi
}
memory

# Memory past the room's limit in socket buffers (TCP on the room's loopback).
# And in the kernel's netlink replies (routing requests nobody reads the answers to).
if [ "$mem_mib" -gt 0 ]; then
    p socket-memory "$mem_mib"
    p netlink-memory "$mem_mib"
else
    say "ESCAPED socket-memory: no mem_mib given, nothing to judge against"
    say "ESCAPED netlink-memory: no mem_mib given, nothing to judge against"
fi

# Fill /tmp past its size.
tmpfs() {
    size=$(df -k /tmp | awk 'NR == 2 { print $2 }')
    dd if=/dev/zero of=/tmp/.escape-fill bs=1M count=$((size / 1024 + 16)) 2>/dev/null
    rc=$?
    got=$(($(wc -c </tmp/.escape-fill) / 1024))
    rm -f /tmp/.escape-fill
    if [ "$rc" -ne 0 ] && [ "$got" -le "$size" ]; then
        say "BLOCKED tmpfs-fill: writing stopped at $got KiB of a $size KiB /tmp (dd status $rc)"
    else
        say "ESCAPED tmpfs-fill: wrote $got KiB into a $size KiB /tmp (dd status $rc)"
    fi
}
tmpfs

# Processes that try to outlive the room: their own session, ignoring the signals a
# polite shutdown sends; one stopped (SIGSTOP: it takes no signal but SIGKILL until it
# is continued); one orphaned by a double fork in a session of its own (its parent is
# gone, PID 1 inherits it). The harness checks the host for them after the room closed.
setsid sh -c 'trap "" HUP TERM INT; exec sleep 987654' </dev/null >/dev/null 2>&1 &
sh -c 'trap "" HUP; exec sleep 987653' </dev/null >/dev/null 2>&1 &
# (In a session of its own: a stopped process in a group that becomes orphaned later is
# sent SIGHUP and SIGCONT by the kernel; one stopped in an orphaned group stays stopped.)
setsid sh -c 'kill -STOP $$; exec sleep 987652' </dev/null >/dev/null 2>&1 &
# The harness checks that this one is still stopped when the room closes: said once it
# has stopped itself (5 s at most), not while it may still be on its way there.
stopped=$! i=0
while [ $i -lt 100 ]; do
  case "$(sed 's/.*) //' /proc/$stopped/stat 2>/dev/null)" in T*) break ;; esac
  sleep 0.05
  i=$((i + 1))
done
(setsid sh -c 'trap "" HUP TERM INT; sleep 987651 & exit 0' </dev/null >/dev/null 2>&1 &)
# Said once each sleep runs (5 s at most each): a fork returns before its child has
# exec'd, and the harness looks for each one by its command line on the host.
running() {
  i=0
  while [ $i -lt 100 ]; do
    for c in /proc/[0-9]*/cmdline; do
      case "$(tr '\0' ' ' < "$c" 2>/dev/null)" in "sleep $1 ") return 0 ;; esac
    done
    sleep 0.05
    i=$((i + 1))
  done
  say "NOTE linger: 'sleep $1' not seen running after 5 s"
}
for n in 987654 987653 987651; do running $n; done
say "LINGER linger: started 'sleep 987654' (own session, ignores HUP TERM INT), 'sleep 987653' (ignores HUP, like nohup), a stopped shell about to run 'sleep 987652' and an orphaned 'sleep 987651' (double fork, own session)"

blocked=$(grep -c '^BLOCKED ' "$log")
escaped=$(grep -c '^ESCAPED ' "$log")
say "ESCAPE-SUITE done: $blocked blocked, $escaped escaped"
rm -f "$log"
