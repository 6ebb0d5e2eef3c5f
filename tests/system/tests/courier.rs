// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier end to end, in the anchor host: two microVM rooms (tests/system/policies:
//! `sender` may send to `receiver`), bay0's prompt on the framebuffer (QEMU VGA, vesafb)
//! and on the console, answered with QMP `send-key` on the emulated PS/2 keyboard (bay0
//! reads it from evdev), the file carried over both rooms' hybrid vsock by the one-shot
//! anchor-courier. A person's view: commands typed into the rooms' consoles
//! (`anchorctl room console`) and the operator shell.
//!
//! Needs: qemu-system-x86_64, $ANCHOR_OUT/host-bzImage, the rooms initramfs (run-all.sh
//! builds it). The prompt's screendump is kept as a PNG under
//! `$ANCHOR_CACHE/systest/artifacts/`. Asserts behaviour; figures are printed only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{cache_dir, rooms_initramfs, Machine, Options};
use anchor_text::prompt::{Channel, Prompt, Surface};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Hang detection only (TCG + nesting on a busy 2-core machine).
const BOOT: Duration = Duration::from_secs(180);
const ROOM: Duration = Duration::from_secs(240);
const SHELL: Duration = Duration::from_secs(120);
/// A 100 MiB item through two nested rooms under TCG.
const BIG: Duration = Duration::from_secs(1200);
/// The prompt's timeout these tests boot bay0 with (`bay0.courier_timeout`).
const TIMEOUT_S: u32 = 15;
const TITLE: &str = "bay0: courier: ANCHOR TRUSTED PROMPT";

fn machine(name: &str, framebuffer: bool) -> Machine {
    let mut opts = Options::from_env(name)
        .unwrap()
        .initramfs(rooms_initramfs().unwrap())
        .append("bay0.shell=1")
        .append(&format!("bay0.courier_timeout={TIMEOUT_S}"))
        .memory_mib(1536)
        .watchdog();
    if framebuffer {
        // VGA with a VESA mode set at boot: /dev/fb0 is vesafb, 1024x768, 24 bpp.
        opts = opts.framebuffer().append("vga=0x318");
    }
    let mut m = Machine::start(opts).unwrap();
    m.wait_for_line("bay0: ready", BOOT).unwrap();
    m.wait_for_from(0, "anchor# ", SHELL).unwrap();
    m.sh_ok("stty cols 1000", ROOM).unwrap();
    m
}

fn attach(m: &mut Machine, room: &str) {
    m.attach_console(room, SHELL).unwrap();
}

fn detach(m: &mut Machine, room: &str) {
    let from = m.serial().len();
    m.detach_console(room, SHELL).unwrap();
    m.type_text("\r").unwrap();
    m.wait_for_from(from, "anchor# ", SHELL).unwrap();
}

static MARK: AtomicU32 = AtomicU32::new(0);

/// A shell command (N follows it) that writes N MiB: 1 MiB from /dev/urandom, repeated N
/// times, each copy starting with its number (no two MiB are alike). /dev/urandom for the
/// whole item takes minutes in a nested TCG room.
const SEEDED: &str = "head -c 1048560 /dev/urandom > /tmp/seed && f() { for i in $(seq $1); do \
     printf '%016d' $i; cat /tmp/seed; done; } && f";

/// Runs `cmd` in the attached `room`; its output lines (without the `room| ` prefix)
/// and exit status.
fn in_room(m: &mut Machine, room: &str, cmd: &str, timeout: Duration) -> (Vec<String>, i32) {
    let n = MARK.fetch_add(1, Ordering::Relaxed);
    let marker = format!("@@room-done-{n}@@");
    let from = m.serial().len();
    m.type_text(&format!("{cmd}; echo {marker} $?\r")).unwrap();
    let end = m
        .wait_for_line_from(from, &format!("{room}| {marker}"), timeout)
        .unwrap_or_else(|e| panic!("`{cmd}` in {room}: {e}"));
    let status = end.line.rsplit(' ').next().unwrap().trim().parse().unwrap();
    let log = m.serial();
    let prefix = format!("{room}| ");
    let lines = log[from..end.end]
        .lines()
        .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest.to_string()))
        .filter(|l| !l.contains(&marker))
        .collect();
    (lines, status)
}

/// Types `cmd` into the attached room and waits for bay0's prompt (on the console); the
/// serial offset before the command.
fn ask(m: &mut Machine, cmd: &str) -> usize {
    let from = m.serial().len();
    m.type_text(&format!("{cmd}\r")).unwrap();
    m.wait_for_line_from(from, TITLE, ROOM).unwrap();
    // Keys sooner than 1 s after the prompt appeared do not count.
    std::thread::sleep(Duration::from_millis(1300));
    from
}

fn hex32(text: &str) -> [u8; 32] {
    let t = text.trim();
    assert_eq!(t.len(), 64, "{t:?}");
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// The screendump shows exactly the prompt bay0 draws for this request (vesafb
/// 1024x768x24 as QEMU's VGA presents it): decoded and compared pixel for pixel with
/// anchor-text's rendering of the same prompt.
fn check_screendump(m: &mut Machine, prompt: &Prompt<'_>) {
    let dir = cache_dir().join("systest/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("courier-prompt.png");
    let _ = std::fs::remove_file(&png);
    m.screendump(&png).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1024, 768), "screen size");
    let surface = Surface {
        width: 1024,
        height: 768,
        stride: 3072,
        bytes_per_pixel: 3,
        red: Channel {
            offset: 16,
            length: 8,
        },
        green: Channel {
            offset: 8,
            length: 8,
        },
        blue: Channel {
            offset: 0,
            length: 8,
        },
    };
    let want = prompt.draw(&surface).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let mut differ = 0usize;
    for y in 0..768 {
        for x in 0..1024 {
            let at = y * 3072 + x * 3;
            let wanted = [want[at + 2], want[at + 1], want[at]];
            let got = &buf[(y * 1024 + x) * step..(y * 1024 + x) * step + 3];
            differ += usize::from(got != wanted);
        }
    }
    eprintln!(
        "figure: screendump {} ({differ} of 786432 pixels differ)",
        png.display()
    );
    assert_eq!(
        differ,
        0,
        "the screen is not bay0's prompt: see {}",
        png.display()
    );
}

#[test]
fn prompt_no_timeout_policy_and_a_100_mib_item_with_the_audit_log() {
    let t0 = Instant::now();
    let mut m = machine("courier-prompt", true);
    for room in ["sender", "receiver"] {
        assert!(m
            .sh_ok(&format!("anchorctl room start {room}"), ROOM)
            .unwrap()
            .contains("ready"));
    }
    eprintln!(
        "figure: boot + two rooms {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // A policy refusal: receiver may not send to sender.
    attach(&mut m, "receiver");
    let (out, status) = in_room(
        &mut m,
        "receiver",
        "echo x > /tmp/x; courier send /tmp/x --to sender",
        SHELL,
    );
    assert_eq!(status, 1, "{out:?}");
    assert!(
        out.iter()
            .any(|l| l.contains("courier: refused: policy: room receiver may not send to sender")),
        "{out:?}"
    );
    detach(&mut m, "receiver");

    attach(&mut m, "sender");
    let t = Instant::now();
    let (out, status) = in_room(
        &mut m,
        "sender",
        &format!("{SEEDED} 100 > big && sha256sum big && echo note > small.txt"),
        BIG,
    );
    assert_eq!(status, 0, "{out:?}");
    let sha_big = hex32(
        out.iter()
            .find(|l| l.ends_with("  big"))
            .unwrap()
            .split(' ')
            .next()
            .unwrap(),
    );
    eprintln!(
        "figure: 100 MiB (seeded from /dev/urandom) + sha256sum in the room {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // No: the prompt, then N on the keyboard.
    let from = ask(&mut m, "courier send small.txt --to receiver; echo @@no $?");
    m.send_key(&["n"]).unwrap();
    let line = m
        .wait_for_line_from(
            from,
            "sender| courier: refused: declined on the anchor's keyboard",
            SHELL,
        )
        .unwrap();
    m.wait_for_line_from(line.end, "sender| @@no 1", SHELL)
        .unwrap();

    // No answer: the stated timeout refuses it. Meanwhile the room prints a line every
    // half second: bay0 holds its console, so none of them shows while the prompt is up
    // (they show before and after it).
    let ticker = "(i=0; while [ $i -lt 80 ]; do echo tick-$i; i=$((i+1)); sleep 0.5; done; \
                  echo tick-end) &";
    let from = m.serial().len();
    m.type_text(&format!("{ticker}\r")).unwrap();
    m.wait_for_line_from(from, "sender| tick-2", SHELL).unwrap();
    let from = ask(
        &mut m,
        "courier send small.txt --to receiver; echo @@timeout $?",
    );
    let timed = format!(
        "sender| courier: timed out: no answer on the anchor's keyboard within {TIMEOUT_S} s"
    );
    let line = m.wait_for_line_from(from, &timed, SHELL).unwrap();
    m.wait_for_line_from(line.end, "sender| @@timeout 3", SHELL)
        .unwrap();
    let end = m
        .wait_for_line_from(line.end, "sender| tick-end", SHELL)
        .unwrap();
    let log = m.serial();
    let up = from + log[from..].find(TITLE).unwrap();
    let verdict = "bay0: courier: sender -> receiver: timeout";
    let down = up + log[up..].find(verdict).unwrap();
    let ticks = |text: &str| text.matches("sender| tick-").count();
    let (before, during, after) = (
        ticks(&log[..up]),
        ticks(&log[up..down]),
        ticks(&log[down..end.end]),
    );
    eprintln!("figure: room lines before/while/after the prompt: {before}/{during}/{after}");
    assert!(
        before >= 1 && after >= 1,
        "{before} {after}:\n{}",
        &log[from..end.end]
    );
    assert_eq!(
        during,
        0,
        "room output while the prompt was up:\n{}",
        &log[up..down]
    );

    // Neither No nor the timeout left anything in the destination.
    detach(&mut m, "sender");
    assert_eq!(incoming(&mut m), Vec::<String>::new());

    // A compromised VMM (the room's uid owns its run directory) replaces the receiver's
    // vsock socket with a link to the sender's: bay0 must not deliver into the sender. It
    // checks the listener's uid, refuses, and the sender hears why.
    let plant = "cd /run/anchor/rooms/receiver && mv vsock vsock.real && \
                 ln -s /run/anchor/rooms/sender/vsock vsock && ls -l vsock";
    assert!(m
        .sh_ok(plant, ROOM)
        .unwrap()
        .contains("-> /run/anchor/rooms/sender/vsock"));
    attach(&mut m, "sender");
    let from = ask(
        &mut m,
        "courier send small.txt --to receiver; echo @@planted $?",
    );
    m.send_key(&["y"]).unwrap();
    let line = m
        .wait_for_line_from(from, "sender| courier: failed: ", SHELL)
        .unwrap();
    assert!(
        line.line.contains("its listener is not the room's uid"),
        "{}",
        line.line
    );
    m.wait_for_line_from(line.end, "sender| @@planted 4", SHELL)
        .unwrap();
    assert_eq!(
        listing(&mut m, "sender", "~/Incoming"),
        Vec::<String>::new()
    );
    detach(&mut m, "sender");
    m.sh_ok(
        "cd /run/anchor/rooms/receiver && rm vsock && mv vsock.real vsock",
        ROOM,
    )
    .unwrap();
    assert_eq!(incoming(&mut m), Vec::<String>::new());
    attach(&mut m, "sender");

    // Yes: the prompt is on the screen, Y on the keyboard, 100 MiB arrive byte-identical.
    let from = ask(&mut m, "courier send big --to receiver; echo @@big $?");
    let sha_line = m
        .wait_for_line_from(from, "bay0: courier: SHA-256: ", Duration::ZERO)
        .unwrap();
    let want = format!("{:02x}{:02x}", sha_big[0], sha_big[1]);
    assert!(sha_line.line.contains(&want), "{} {want}", sha_line.line);
    let prompt = Prompt::of(
        "sender",
        "receiver",
        b"big",
        104_857_600,
        &sha_big,
        TIMEOUT_S,
    );
    check_screendump(&mut m, &prompt);
    let t = Instant::now();
    m.send_key(&["y"]).unwrap();
    let done = m
        .wait_for_line_from(
            from,
            "sender| courier: delivered big to room receiver as ~/Incoming/big",
            BIG,
        )
        .unwrap();
    eprintln!(
        "figure: Y -> 100 MiB delivered {:.1} s",
        t.elapsed().as_secs_f64()
    );
    m.wait_for_line_from(done.end, "sender| @@big 0", SHELL)
        .unwrap();
    detach(&mut m, "sender");
    attach(&mut m, "receiver");
    let (out, _) = in_room(
        &mut m,
        "receiver",
        "sha256sum ~/Incoming/big; ls -ln ~/Incoming",
        BIG,
    );
    let got = out.iter().find(|l| l.contains("Incoming/big")).unwrap();
    assert_eq!(hex32(got.split(' ').next().unwrap()), sha_big, "{out:?}");
    let listing = out.iter().find(|l| l.ends_with(" big")).unwrap();
    assert!(
        listing.starts_with("-rw-r--r--")
            && listing.contains(" 1000 ")
            && listing.contains(" 104857600 "),
        "{listing}"
    );
    detach(&mut m, "receiver");

    // Every decision is in the audit log, and the log verifies. The vault is not open:
    // anchorctl reads this boot's log by default, and says so.
    let shown = m.sh_ok("anchorctl audit show", ROOM).unwrap();
    assert!(
        shown.contains("the vault is not open")
            && shown.contains("this boot's log, /run/anchor/audit.log"),
        "{shown}"
    );
    let records: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains(" bay0 courier "))
        .collect();
    assert_eq!(records.len(), 5, "{shown}");
    for (i, want) in [
        "from=receiver to=sender name=x size=2 ",
        "from=sender to=receiver name=small.txt size=5 ",
        "from=sender to=receiver name=small.txt size=5 ",
        "from=sender to=receiver name=small.txt size=5 ",
        "from=sender to=receiver name=big size=104857600 ",
    ]
    .iter()
    .enumerate()
    {
        assert!(records[i].contains(want), "{}", records[i]);
    }
    for (r, d) in records.iter().zip([
        "decision=refused outcome=refused reason=policy:",
        "decision=no outcome=refused",
        "decision=timeout outcome=timed-out",
        "decision=yes outcome=failed reason=the%20courier%20could%20not%20start",
        "decision=yes outcome=delivered reason=big ",
    ]) {
        assert!(r.contains(d), "{r}");
    }
    // The rooms' starts are audited in the same chain.
    for room in ["sender", "receiver"] {
        let start = format!(" bay0 room.start room={room} how=opened backend=microvm");
        assert!(shown.contains(&start), "{shown}");
    }
    let total = shown.lines().filter(|l| l.starts_with('#')).count();
    // Its chain alone: the TPM anchors its records once they are carried into the vault.
    let verified = m.sh_ok("anchorctl audit verify", ROOM).unwrap();
    assert!(
        verified.contains(&format!(
            "/run/anchor/audit.log: chain intact: {total} records (not compared"
        )),
        "{verified}"
    );

    m.system_powerdown().unwrap();
    m.wait_for_line("reboot: Power down", BOOT).unwrap();
    eprintln!("figure: whole run {:.1} s", t0.elapsed().as_secs_f64());
}

/// The ~/Incoming of the receiver, as `ls -A` lists it.
fn incoming(m: &mut Machine) -> Vec<String> {
    attach(m, "receiver");
    let listed = listing(m, "receiver", "~/Incoming");
    detach(m, "receiver");
    listed
}

/// `ls -A DIR` in the attached `room`: each name printed behind a marker of its own, so
/// that nothing else the console shows (the room's scrollback, replayed on attach, may
/// still be arriving) is taken for a name.
fn listing(m: &mut Machine, room: &str, dir: &str) -> Vec<String> {
    let tag = format!("@@ls-{}@@ ", MARK.fetch_add(1, Ordering::Relaxed));
    let cmd = format!("ls -A {dir} 2>/dev/null | sed 's/^/{tag}/'");
    let (out, _) = in_room(m, room, &cmd, SHELL);
    out.iter()
        .filter_map(|l| l.strip_prefix(&tag).map(str::to_string))
        .collect()
}

/// Sends `mid` from the sender in the background (its client's output goes to
/// /tmp/send.log in the room) and approves it; once the client reports 10% sent (the
/// courier is streaming), detaches from the sender and, in the operator shell, records
/// the running courier's credentials in /tmp/watch.log and runs `then` (the kill; `$p` is
/// the courier's pid). Returns the serial offset before the send. (The host kernel has no
/// per-task I/O accounting, so the client's own progress says the transfer is under way.)
fn send_and_kill(m: &mut Machine, then: &str) -> usize {
    attach(m, "sender");
    let from = ask(
        m,
        "(courier send mid --to receiver; echo @@sent $?) > /tmp/send.log 2>&1 &",
    );
    m.send_key(&["y"]).unwrap();
    let ten = "until grep -q 'sending mid: 10%' /tmp/send.log; do sleep 0.2; done";
    assert_eq!(in_room(m, "sender", ten, BIG).1, 0);
    detach(m, "sender");
    m.sh_ok(
        &format!(
            "p=$(pidof anchor-courier) && \
             grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' /proc/$p/status > /tmp/watch.log && {then}"
        ),
        ROOM,
    )
    .unwrap();
    from
}

/// The sender's client output once it has ended (attached to the sender, left attached).
fn client_result(m: &mut Machine) -> String {
    attach(m, "sender");
    let wait = "while ! grep -q @@sent /tmp/send.log; do sleep 0.2; done; cat /tmp/send.log";
    in_room(m, "sender", wait, SHELL).0.join("\n")
}

/// Waits for the courier's failure line after a kill; when it does not come, the failure
/// says what is left running.
fn failed_line(m: &mut Machine, from: usize, failed: &str) -> String {
    match m.wait_for_line_from(from, failed, SHELL) {
        Ok(l) => l.line,
        Err(e) => {
            let seen = m.sh("cat /tmp/watch.log; ps -o pid,user,args", ROOM);
            panic!("{e}\nleft: {seen:?}");
        }
    }
}

/// What the kill saw of the courier.
fn watched(m: &mut Machine) -> String {
    m.sh_ok("cat /tmp/watch.log", ROOM).unwrap()
}

const VMM_OF: &str = "anchorctl room list | awk '$1 == \"ROOM\" { print $7 }'";

#[test]
fn killing_the_courier_the_source_or_the_destination_leaves_nothing_and_is_audited() {
    let mut m = machine("courier-kill", false);
    for room in ["sender", "receiver"] {
        assert!(m
            .sh_ok(&format!("anchorctl room start {room}"), ROOM)
            .unwrap()
            .contains("ready"));
    }
    let make = |m: &mut Machine| {
        attach(m, "sender");
        let (out, status) = in_room(m, "sender", &format!("{SEEDED} 64 > mid"), BIG);
        assert_eq!(status, 0, "{out:?}");
        detach(m, "sender");
    };
    let failed = "bay0: courier: sender -> receiver: yes, failed: ";

    // The courier killed mid-transfer: the sender hears it failed, nothing arrives.
    make(&mut m);
    let from = send_and_kill(&mut m, "kill -9 $p");
    let line = failed_line(&mut m, from, failed);
    assert!(
        line.ends_with("anchor-courier killed by signal 9"),
        "{}",
        line
    );
    let out = client_result(&mut m);
    assert!(
        out.contains("courier: failed: anchor-courier killed by signal 9")
            && out.contains("@@sent 4"),
        "{out}"
    );
    detach(&mut m, "sender");
    let st = watched(&mut m);
    assert!(st.contains("Uid:\t63999\t63999\t63999\t63999"), "{st}");
    assert!(
        st.contains("CapEff:\t0000000000000000")
            && st.contains("NoNewPrivs:\t1")
            && st.contains("Seccomp:\t2"),
        "{st}"
    );
    assert_eq!(incoming(&mut m), Vec::<String>::new());

    // The source room killed mid-transfer: the destination keeps nothing.
    let from = send_and_kill(
        &mut m,
        &format!("kill -9 $({})", VMM_OF.replace("ROOM", "sender")),
    );
    let line = failed_line(&mut m, from, failed);
    assert!(line.contains("the source room sender"), "{}", line);
    m.wait_for_line_from(from, "bay0: room sender (pid ", SHELL)
        .unwrap();
    assert_eq!(incoming(&mut m), Vec::<String>::new());

    // The destination room killed mid-transfer: the courier fails, the sender hears it,
    // and the room, opened again, has nothing.
    assert!(m
        .sh_ok("anchorctl room start sender", ROOM)
        .unwrap()
        .contains("ready"));
    make(&mut m);
    let from = send_and_kill(
        &mut m,
        &format!("kill -9 $({})", VMM_OF.replace("ROOM", "receiver")),
    );
    let line = failed_line(&mut m, from, failed);
    assert!(line.contains("the destination room receiver"), "{}", line);
    let out = client_result(&mut m);
    assert!(
        out.contains("courier: failed: the destination room receiver") && out.contains("@@sent 4"),
        "{out}"
    );
    detach(&mut m, "sender");
    assert!(m
        .sh_ok("anchorctl room start receiver", ROOM)
        .unwrap()
        .contains("ready"));
    assert_eq!(incoming(&mut m), Vec::<String>::new());

    let log = m
        .sh_ok("anchorctl audit show --file /run/anchor/audit.log", ROOM)
        .unwrap();
    assert_eq!(
        log.matches("decision=yes outcome=failed").count(),
        3,
        "{log}"
    );
    assert!(
        log.contains("reason=anchor-courier%20killed%20by%20signal%209"),
        "{log}"
    );
    // The killed rooms' ends are audited too (a VMM's unexpected end: room.end).
    for room in ["sender", "receiver"] {
        let end = format!(" bay0 room.end room={room} how=the%20room%20was%20killed%20(SIGKILL) ");
        assert!(log.contains(&end), "{log}");
    }
    let total = log.lines().filter(|l| l.starts_with('#')).count();
    let verified = m
        .sh_ok(
            "anchorctl audit verify --file /run/anchor/audit.log --no-tpm",
            ROOM,
        )
        .unwrap();
    assert!(
        verified.contains(&format!("intact: {total} records")),
        "{verified}"
    );

    m.system_powerdown().unwrap();
    m.wait_for_line("reboot: Power down", BOOT).unwrap();
}

/// Sends `file` from the attached `from` to `to`, approves it with Y and waits for the
/// client's result; the client's lines.
fn send_yes(m: &mut Machine, from: &str, file: &str, to: &str) -> Vec<String> {
    let n = MARK.fetch_add(1, Ordering::Relaxed);
    let start = ask(
        m,
        &format!("courier send {file} --to {to}; echo @@sent-{n} $?"),
    );
    m.send_key(&["y"]).unwrap();
    let end = m
        .wait_for_line_from(start, &format!("{from}| @@sent-{n} "), ROOM)
        .unwrap();
    let prefix = format!("{from}| ");
    m.serial()[start..end.end]
        .lines()
        .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest.to_string()))
        .collect()
}

/// The SHA-256 of `path` in the attached `room`.
fn sha_in(m: &mut Machine, room: &str, path: &str) -> [u8; 32] {
    let (out, status) = in_room(m, room, &format!("sha256sum {path}"), SHELL);
    assert_eq!(status, 0, "{out:?}");
    let file = path.rsplit('/').next().unwrap();
    hex32(
        out.iter()
            .find(|l| l.ends_with(file))
            .unwrap()
            .split(' ')
            .next()
            .unwrap(),
    )
}

/// Unless `out` (a client's lines) has `want`: detaches from `from`, shows what `to` and
/// `from` printed lately (their consoles' scrollback) and fails.
fn delivered(m: &mut Machine, out: &[String], want: &str, from: &str, to: &str) {
    if out.iter().any(|l| l.contains(want)) {
        return;
    }
    detach(m, from);
    let mut seen = String::new();
    for room in [to, from] {
        let start = m.serial().len();
        attach(m, room);
        seen.push_str(&m.serial()[start..]);
        detach(m, room);
    }
    panic!("{from} -> {to}: no {want:?} in {out:?}; consoles:\n{seen}");
}

/// Namespace rooms have the courier too: they have no vsock, so bay0 passes each one a
/// socket on its umbilical (SCM_RIGHTS) and the agent serves it as it serves a vsock
/// connection. A namespace room sends to another namespace room and to a microVM room,
/// and a microVM room sends to a namespace room; each item arrives byte-identical under
/// the room's ~/Incoming (a namespace room's shell user is its root: /root/Incoming), and
/// each transfer is audited.
#[test]
fn namespace_rooms_send_and_receive_over_a_socket_passed_on_the_umbilical() {
    let mut m = machine("courier-ns", false);
    for room in ["sender", "receiver", "nsmail", "nspost"] {
        let out = m
            .sh_ok(&format!("anchorctl room start {room}"), ROOM)
            .unwrap();
        assert!(out.contains("ready"), "{out}");
    }
    assert!(m
        .sh_ok("anchorctl room list", ROOM)
        .unwrap()
        .contains("namespaces"));

    // namespace room -> namespace room, then -> microVM room.
    attach(&mut m, "nsmail");
    let (out, status) = in_room(
        &mut m,
        "nsmail",
        "head -c 200000 /dev/urandom > /tmp/note.bin",
        SHELL,
    );
    assert_eq!(status, 0, "{out:?}");
    let note = sha_in(&mut m, "nsmail", "/tmp/note.bin");
    for to in ["nspost", "receiver"] {
        let out = send_yes(&mut m, "nsmail", "/tmp/note.bin", to);
        let want = format!("courier: delivered /tmp/note.bin to room {to} as ~/Incoming/note.bin");
        delivered(&mut m, &out, &want, "nsmail", to);
    }
    detach(&mut m, "nsmail");
    attach(&mut m, "receiver");
    assert_eq!(sha_in(&mut m, "receiver", "~/Incoming/note.bin"), note);
    detach(&mut m, "receiver");
    attach(&mut m, "nspost");
    assert_eq!(sha_in(&mut m, "nspost", "/root/Incoming/note.bin"), note);
    detach(&mut m, "nspost");

    // microVM room -> namespace room.
    attach(&mut m, "sender");
    let (out, status) = in_room(&mut m, "sender", &format!("{SEEDED} 3 > three"), BIG);
    assert_eq!(status, 0, "{out:?}");
    let sha = sha_in(&mut m, "sender", "three");
    let out = send_yes(&mut m, "sender", "three", "nsmail");
    let want = "courier: delivered three to room nsmail as ~/Incoming/three";
    delivered(&mut m, &out, want, "sender", "nsmail");
    detach(&mut m, "sender");
    attach(&mut m, "nsmail");
    assert_eq!(sha_in(&mut m, "nsmail", "/root/Incoming/three"), sha);
    detach(&mut m, "nsmail");

    let shown = m
        .sh_ok("anchorctl audit show --file /run/anchor/audit.log", ROOM)
        .unwrap();
    let records: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains(" bay0 courier "))
        .collect();
    assert_eq!(records.len(), 3, "{shown}");
    for (r, want) in records.iter().zip([
        "from=nsmail to=nspost name=note.bin size=200000 ",
        "from=nsmail to=receiver name=note.bin size=200000 ",
        "from=sender to=nsmail name=three size=3145728 ",
    ]) {
        assert!(
            r.contains(want) && r.contains("decision=yes outcome=delivered"),
            "{r}"
        );
    }
    m.system_powerdown().unwrap();
    m.wait_for_line("reboot: Power down", BOOT).unwrap();
}
