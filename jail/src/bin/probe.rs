// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchor-jail-probe`: a test program that plays a compromised VMM. Started through the
//! jail exactly like anchor-vmm, it tries what a VMM taken over by its guest would try
//! and prints one line per attempt: `BLOCKED name: how` or `ESCAPED name: what worked`.
//! The tests fail on any ESCAPED (jail/tests, bay0/tests/jail.rs, tests/system).
//!
//! usage: anchor-jail-probe [--other-socket PATH] [--host-socket PATH] [--image PATH]
//!        [--outside-pid PID] [--tcp PORT] [--abstract NAME] [--memory-bytes N]
//!
//! Started with anchor-vmm's arguments (it sees `--kernel`, e.g. by bay0 in hosted-mode
//! tests, where no Linux guest can boot), it stands in for a room: it prints a console
//! line, reports ready on the umbilical (/run/vsock_1024), prints every notice bay0
//! sends, echoes its console input, and powers off when bay0 asks. When the room's name
//! (`anchor.room=` in `--cmdline`) starts with `probe`, it first makes its attempts on
//! its console, against the host paths bay0 uses (/run/anchor/control.sock, the umbilical
//! of the room named like it with `-other` at the end), a host abstract socket named
//! `anchor-STEM-target` (STEM: its name without the last `-` part), other pids, its image,
//! and memory past its cgroup (its --mem-mib plus bay0's VMM overhead plus 64 MiB). When
//! it starts with `umbcut`, its agent first dies in the middle of a frame and connects
//! again; with `umbjunk`, it sends garbage on its umbilical, again on every new connection.

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anchor_jail::sys;

fn report(name: &str, escaped: bool, how: &str) {
    let line = format!(
        "{} {name}: {how}\n",
        if escaped { "ESCAPED" } else { "BLOCKED" }
    );
    let _ = std::io::stdout().write_all(line.as_bytes());
}

fn expect_err<T, E: std::fmt::Display>(name: &str, r: Result<T, E>, what: &str) {
    match r {
        Ok(_) => report(name, true, what),
        Err(e) => report(name, false, &e.to_string()),
    }
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).cloned()
}

/// Touches `bytes` of fresh memory in a child; the cgroup should kill it.
fn exceed_memory(bytes: u64) {
    match sys::fork() {
        Ok(0) => {
            let mut hold: Vec<Vec<u8>> = Vec::new();
            let mut total = 0u64;
            while total < bytes {
                hold.push(vec![0x5a; 1 << 20]);
                total += 1 << 20;
            }
            std::process::exit(if hold.len() > 1 { 0 } else { 3 });
        }
        Ok(child) => {
            let code = sys::wait_exit_code(child);
            let mib = bytes >> 20;
            if code == 0 {
                report("memory-over-cgroup", true, &format!("touched {mib} MiB"));
            } else {
                let how = format!("killed while touching {mib} MiB (exit code {code})");
                report("memory-over-cgroup", false, &how);
            }
        }
        Err(e) => report("memory-over-cgroup", false, &format!("cannot fork: {e}")),
    }
}

/// Stands in for a room (see the module documentation).
fn fake_room(args: &[String]) {
    use std::io::Read;
    let say = |s: &str| {
        let _ = std::io::stdout().write_all(format!("{s}\r\n").as_bytes());
    };
    say("fake room: booting");
    let umb = UnixStream::connect("/run/vsock_1024");
    let Ok(mut umb) = umb else {
        say("fake room: no umbilical");
        std::process::exit(3);
    };
    let cmdline = arg(args, "--cmdline").unwrap_or_default();
    let room = cmdline
        .split(' ')
        .find_map(|w| w.strip_prefix("anchor.room="))
        .unwrap_or("");
    if room.starts_with("umbcut") {
        umb = agent_cut_mid_frame(umb);
    }
    if room.starts_with("umbjunk") {
        umb = agent_sends_junk(umb);
    }
    let _ = umb.write_all(&[1, 0, 0, 0]);
    say("fake room: ready");
    if room.starts_with("probe") {
        let mib: u64 = arg(args, "--mem-mib")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        // Named after the room (`STEM-a` beside `STEM-other`): tests that run side by
        // side on one machine have rooms, and host sockets, of their own.
        let stem = room.rsplit_once('-').map_or(room, |(stem, _)| stem);
        let targets: Vec<String> = [
            "--other-socket",
            &format!("/run/anchor/rooms/{stem}-other/vsock_1024"),
            "--host-socket",
            "/run/anchor/control.sock",
            "--abstract",
            &format!("anchor-{stem}-target"),
            "--tcp",
            "22",
            "--image",
            "/images/room.squashfs",
            "--outside-pid",
            "2",
            "--memory-bytes",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([((mib + 64 + 64) << 20).to_string()])
        .collect();
        attempts(&targets);
    }
    std::thread::spawn(|| {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        // As a shell echoes keys: a write for each read.
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            let mut out = std::io::stdout();
            let _ = out.write_all(buf.get(..n).unwrap_or_default());
            let _ = out.flush();
        }
    });
    let mut head = [0u8; 4];
    while umb.read_exact(&mut head).is_ok() {
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let mut body = vec![0u8; len];
        if umb.read_exact(&mut body).is_err() {
            break;
        }
        match head[0] {
            2 => {
                say("fake room: powering off");
                std::process::exit(0);
            }
            3 => say(&format!(
                "fake room: notice: {}",
                String::from_utf8_lossy(&body)
            )),
            _ => {}
        }
    }
    loop {
        std::thread::park();
    }
}

/// A room whose name starts with `umbcut` plays an agent that dies in the middle of a
/// courier request (a header and 2 of its 10 payload bytes sent) and is started again:
/// the new agent connects afresh (again until bay0 takes the connection: it refuses a
/// second one while it still holds the first) and starts from a frame's first byte.
fn agent_cut_mid_frame(mut umb: UnixStream) -> UnixStream {
    use std::io::Read;
    let _ = umb.write_all(&[4, 0, 10, 0, 1, 2]);
    drop(umb);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let Ok(mut again) = UnixStream::connect("/run/vsock_1024") else {
            continue;
        };
        let wait = Some(std::time::Duration::from_millis(500));
        let _ = again.set_read_timeout(wait);
        // Refused: bay0 closes it at once. Taken: bay0 says nothing until it has to.
        if !matches!(again.read(&mut [0u8; 1]), Ok(0)) {
            let _ = again.set_read_timeout(None);
            return again;
        }
    }
}

/// A room whose name starts with `umbjunk` plays an agent that sends a frame of an unknown
/// kind, and connects again to send it again when bay0 closes its umbilical (50 times;
/// it gives a connection up after a second of silence).
fn agent_sends_junk(mut umb: UnixStream) -> UnixStream {
    use std::io::Read;
    for _ in 0..50 {
        let _ = umb.write_all(&[9, 0, 0, 0]);
        let _ = umb.set_read_timeout(Some(std::time::Duration::from_secs(1)));
        let _ = umb.read(&mut [0u8; 1]);
        match UnixStream::connect("/run/vsock_1024") {
            Ok(again) => umb = again,
            Err(_) => break,
        }
    }
    umb
}

/// The descriptors above 2 open when the probe started (before it opened any), less the
/// one its --net-fd names (an outbound room's VMM gets that one).
static INHERITED: std::sync::OnceLock<Vec<i32>> = std::sync::OnceLock::new();

fn inherited_fds(args: &[String]) -> Vec<i32> {
    let net: Option<i32> = arg(args, "--net-fd").and_then(|f| f.parse().ok());
    (3..1024)
        .filter(|fd| Some(*fd) != net && sys::is_open(*fd))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let _ = INHERITED.set(inherited_fds(&args));
    if args.get(1).map(String::as_str) == Some("--room-seccomp") {
        room_seccomp();
    } else if args.iter().any(|a| a == "--kernel") {
        fake_room(&args);
    } else {
        attempts(&args);
    }
}

/// `--room-seccomp`: installs a namespace room's seccomp filters on itself (as anchor-jail
/// does before exec'ing a room's agent) and prints `CASE ok` or `CASE ERRNO` for each
/// system call in `raw::CASES`, then whether a thread and a child can still be made.
fn room_seccomp() {
    if let Err(e) = sys::no_new_privs().and_then(|()| anchor_jail::seccomp::install()) {
        report("install", true, &e.to_string());
        std::process::exit(1);
    }
    for (name, call) in raw::CASES {
        let line = match call() {
            Ok(()) => format!("{name} ok\n"),
            Err(e) => format!("{name} {e}\n"),
        };
        let _ = std::io::stdout().write_all(line.as_bytes());
    }
    let thread = std::thread::spawn(|| 7).join().unwrap_or(0);
    let child = match sys::fork() {
        Ok(0) => std::process::exit(3),
        Ok(pid) => sys::wait_exit_code(pid),
        Err(_) => -1,
    };
    let line = format!("thread {thread}\nfork {child}\n");
    let _ = std::io::stdout().write_all(line.as_bytes());
}

/// Raw system calls for `--room-seccomp` (test helper only), each `unsafe` block with its
/// reason. Arguments are invalid or harmless: only the filter's answer matters.
mod raw {
    fn answer(ret: libc::c_long) -> Result<(), i32> {
        if ret < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(())
        }
    }

    macro_rules! call {
        ($($arg:expr),*) => {
            // SAFETY: every argument is an integer, NULL or a static string; a call the
            // filter lets through fails on them or makes a throwaway descriptor (the clone
            // cases add CLONE_SIGHAND without CLONE_VM, which the kernel refuses with
            // EINVAL: no second process, were the filter to let one through).
            answer(unsafe { libc::syscall($($arg),*) })
        };
    }

    type Case = (&'static str, fn() -> Result<(), i32>);

    /// (name, call): names say what is asked.
    pub const CASES: &[Case] = &[
        ("getpid", || call!(libc::SYS_getpid)),
        ("unknown-1000", || call!(1000)),
        ("clone3", || call!(libc::SYS_clone3, 0usize, 0usize)),
        ("clone-newuser", || {
            call!(
                libc::SYS_clone,
                libc::CLONE_NEWUSER | libc::CLONE_SIGHAND | libc::SIGCHLD,
                0usize,
                0usize,
                0usize,
                0usize
            )
        }),
        ("clone-newnet", || {
            call!(
                libc::SYS_clone,
                libc::CLONE_NEWNET | libc::CLONE_SIGHAND | libc::SIGCHLD,
                0usize,
                0usize,
                0usize,
                0usize
            )
        }),
        ("unshare-user", || {
            call!(libc::SYS_unshare, libc::CLONE_NEWUSER)
        }),
        ("setns", || call!(libc::SYS_setns, -1, 0)),
        ("mount", || {
            call!(libc::SYS_mount, 0usize, 0usize, 0usize, 0usize, 0usize)
        }),
        ("umount2", || call!(libc::SYS_umount2, c"/".as_ptr(), 0)),
        ("chroot", || call!(libc::SYS_chroot, c"/".as_ptr())),
        ("pivot_root", || call!(libc::SYS_pivot_root, 0usize, 0usize)),
        ("fsopen", || call!(libc::SYS_fsopen, 0usize, 0)),
        ("open_tree", || call!(libc::SYS_open_tree, -1, 0usize, 0)),
        ("bpf", || call!(libc::SYS_bpf, 0, 0usize, 0)),
        ("perf_event_open", || {
            call!(libc::SYS_perf_event_open, 0usize, 0, -1, -1, 0)
        }),
        ("init_module", || {
            call!(libc::SYS_init_module, 0usize, 0usize, 0usize)
        }),
        ("finit_module", || {
            call!(libc::SYS_finit_module, -1, 0usize, 0)
        }),
        ("kexec_load", || {
            call!(libc::SYS_kexec_load, 0usize, 0usize, 0usize, 0usize)
        }),
        ("keyctl", || call!(libc::SYS_keyctl, 0, 0, 0)),
        ("userfaultfd", || call!(libc::SYS_userfaultfd, 0)),
        ("open_by_handle_at", || {
            call!(libc::SYS_open_by_handle_at, -1, 0usize, 0)
        }),
        ("io_uring_setup", || {
            call!(libc::SYS_io_uring_setup, 0, 0usize)
        }),
        ("syslog", || call!(libc::SYS_syslog, 3, 0usize, 0)),
        ("reboot", || call!(libc::SYS_reboot, 0, 0, 0, 0usize)),
        ("ioctl-tiocsti", || {
            call!(libc::SYS_ioctl, -1, libc::TIOCSTI, 0usize)
        }),
        // A new core limit is refused (it stays 1 byte); reading it, and other limits, are
        // not. A non-NULL bad address: a call let through fails with EFAULT.
        ("setrlimit-core", || {
            call!(libc::SYS_setrlimit, libc::RLIMIT_CORE, 8usize)
        }),
        ("prlimit64-core-set", || {
            call!(libc::SYS_prlimit64, 0, libc::RLIMIT_CORE, 8usize, 0usize)
        }),
        ("prlimit64-core-get", || {
            call!(libc::SYS_prlimit64, 0, libc::RLIMIT_CORE, 0usize, 0usize)
        }),
        ("prlimit64-nofile-set", || {
            call!(libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE, 8usize, 0usize)
        }),
        ("ioctl-tcgets", || {
            call!(libc::SYS_ioctl, -1, libc::TCGETS, 0usize)
        }),
        ("socket-unix", || {
            call!(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0)
        }),
        ("socket-inet", || {
            call!(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0)
        }),
        ("socket-netlink-route", || {
            call!(libc::SYS_socket, libc::AF_NETLINK, libc::SOCK_DGRAM, 0)
        }),
        ("socket-netlink-uevent", || {
            call!(libc::SYS_socket, libc::AF_NETLINK, libc::SOCK_DGRAM, 15)
        }),
        ("socket-vsock", || {
            call!(libc::SYS_socket, libc::AF_VSOCK, libc::SOCK_STREAM, 0)
        }),
        ("socket-alg", || {
            call!(libc::SYS_socket, libc::AF_ALG, libc::SOCK_SEQPACKET, 0)
        }),
        ("socketpair-inet", || {
            call!(
                libc::SYS_socketpair,
                libc::AF_INET,
                libc::SOCK_STREAM,
                0,
                0usize
            )
        }),
    ];
}

/// Makes every attempt the arguments allow, one line each.
fn attempts(args: &[String]) {
    let args = args.to_vec();
    match INHERITED.get().map(Vec::as_slice).unwrap_or_default() {
        [] => report("inherited-fds", false, "none beyond 0, 1, 2"),
        fds => report(
            "inherited-fds",
            true,
            &format!("started holding descriptors {fds:?} of whoever started the jail"),
        ),
    }
    for (name, flag) in [
        ("other-room-socket", "--other-socket"),
        ("host-socket", "--host-socket"),
    ] {
        if let Some(p) = arg(&args, flag) {
            expect_err(name, UnixStream::connect(&p), &format!("connected to {p}"));
        }
    }
    if let Some(name) = arg(&args, "--abstract") {
        use std::os::linux::net::SocketAddrExt;
        let r = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|a| UnixStream::connect_addr(&a));
        expect_err(
            "host-abstract-socket",
            r,
            "connected to a host abstract socket",
        );
    }
    if let Some(port) = arg(&args, "--tcp") {
        let r = std::net::TcpStream::connect(format!("127.0.0.1:{port}"));
        expect_err("host-loopback-tcp", r, "reached the host's loopback");
    }
    expect_err(
        "proc-of-others",
        std::fs::read_to_string("/proc/1/environ"),
        "read /proc/1/environ",
    );
    expect_err(
        "mount-proc",
        sys::mount(
            "mount",
            Some(Path::new("proc")),
            Path::new("/run"),
            Some(c"proc"),
            0,
            None,
        ),
        "mounted /proc",
    );
    expect_err(
        "mount-tmpfs",
        sys::mount(
            "mount",
            Some(Path::new("t")),
            Path::new("/run"),
            Some(c"tmpfs"),
            0,
            None,
        ),
        "mounted a tmpfs",
    );
    expect_err(
        "mount-cgroup",
        sys::mount(
            "mount",
            Some(Path::new("c")),
            Path::new("/run"),
            Some(c"cgroup2"),
            0,
            None,
        ),
        "mounted the cgroup file system (could raise its own limits)",
    );
    if let Some(image) = arg(&args, "--image") {
        expect_err(
            "write-image",
            std::fs::OpenOptions::new().write(true).open(&image),
            "opened the room image for writing",
        );
    }
    expect_err(
        "write-root",
        std::fs::File::create("/evil"),
        "created a file in the jail's root",
    );
    if let Some(pid) = arg(&args, "--outside-pid").and_then(|p| p.parse().ok()) {
        expect_err(
            "ptrace-outside",
            sys::ptrace_attach(pid),
            "attached to an outside process",
        );
        expect_err(
            "signal-outside",
            sys::kill(pid, 0),
            "can signal an outside process",
        );
    }
    expect_err("setuid-root", sys::setresuid(0), "became root");
    expect_err(
        "mknod-mem",
        sys::mknod_char(Path::new("/run/mem"), 0o600, 1, 1),
        "created /dev/mem",
    );
    expect_err("chroot", sys::chroot(Path::new("/run")), "called chroot");
    match sys::capabilities_held() {
        Ok(false) => report("capabilities", false, "none held"),
        Ok(true) => report("capabilities", true, "holds capabilities"),
        Err(e) => report("capabilities", true, &format!("cannot tell: {e}")),
    }
    if let Some(bytes) = arg(&args, "--memory-bytes").and_then(|b| b.parse().ok()) {
        exceed_memory(bytes);
    }
    report("done", false, "all attempts made");
}
