# SPDX-License-Identifier: GPL-3.0-or-later
# Read by the anchor host's operator shell (bay0.shell=1): bay0 starts it with
# ENV=/etc/anchor/operator.sh (tests/system/mkinitramfs.sh installs this file there).
#
# poweroff, halt and reboot. The shell runs busybox's applets of those names ahead of any
# file, and they signal PID 1 as busybox's own init reads signals: SIGUSR2 (poweroff) and
# SIGUSR1 (halt), which bay0 takes as a power-off, but SIGTERM for reboot, which is bay0's
# power-off. These functions send bay0's own signals: SIGTERM to power off, SIGINT
# (Ctrl-Alt-Del's) to reboot (docs/ARCHITECTURE.md). bay0 then shuts down cleanly: rooms
# closed (a room with a vault volume syncs first), file systems synced and unmounted.
# They take no options (busybox's -f would skip all that).
anchor_shutdown() {
    local name="$1" sig="$2"
    shift 2
    if [ "$#" -ne 0 ]; then
        echo "$name: takes no options (bay0 always shuts the anchor host down cleanly)" >&2
        return 2
    fi
    kill -s "$sig" 1
}
poweroff() { anchor_shutdown poweroff TERM "$@"; }
halt() { anchor_shutdown halt TERM "$@"; }
reboot() { anchor_shutdown reboot INT "$@"; }
