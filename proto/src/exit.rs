// SPDX-License-Identifier: GPL-3.0-or-later
//! What the exit status of one of bay0's helpers means: anchor-jail (and the anchor-vmm
//! it becomes) for a room, and `anchor-vault unlock`. Each program documents its codes
//! (jail/src/main.rs, vmm/README.md, tools/anchor-vault); bay0 logs and answers with these
//! words, so the codes are part of the contract between bay0 and its helpers.

/// What a room's exit status means: anchor-jail's, then that of what it execs in its place
/// (anchor-vmm in a microVM room, the agent in a namespace room: the words for a kill or
/// an unknown code fit both).
pub fn room(code: i32) -> &'static str {
    match code {
        0 => "the room powered off",
        1 => "anchor-jail could not build the room's jail",
        2 => "anchor-vmm refused its command line",
        3 => "anchor-vmm failed (VMM error)",
        4 => "the room's guest faulted",
        127 => "anchor-jail could not be started",
        137 => "the room was killed (SIGKILL)",
        _ => "the room ended unexpectedly",
    }
}

/// What an `anchor-vault unlock` exit status means.
pub fn vault(code: i32) -> &'static str {
    match code {
        0 => "/persist is open",
        2 => "anchor-vault refused its command line",
        3 => "no right passphrase or recovery key was given",
        4 => "the disk holds no vault",
        5 => "both copies of the vault header are damaged (nothing was changed)",
        _ => "anchor-vault failed (its message is on the console)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_exit_codes_are_described() {
        assert_eq!(room(0), "the room powered off");
        assert_eq!(room(4), "the room's guest faulted");
        assert_eq!(room(137), "the room was killed (SIGKILL)");
        assert_eq!(room(99), "the room ended unexpectedly");
    }

    #[test]
    fn vault_exit_codes_are_described() {
        assert_eq!(vault(0), "/persist is open");
        assert!(vault(5).contains("nothing was changed"));
        assert!(vault(99).contains("failed"));
    }
}
