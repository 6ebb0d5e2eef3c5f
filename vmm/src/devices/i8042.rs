// SPDX-License-Identifier: GPL-3.0-or-later
//! Minimal i8042 keyboard controller: enough for Linux to probe it and for
//! `reboot=k` to reset the machine. Command 0xFE on port 0x64 (pulse the reset
//! line) is reported to the caller as a reset request.

/// Data port.
pub const DATA_PORT: u16 = 0x60;
/// Status / command port.
pub const CMD_PORT: u16 = 0x64;

const SB_OUT_FULL: u8 = 0x01;
const SB_SYS_FLAG: u8 = 0x04;
const SB_CMD_DATA: u8 = 0x08;
const SB_KBD_ENABLED: u8 = 0x10;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_READ_OUTP: u8 = 0xd0;
const CMD_WRITE_OUTP: u8 = 0xd1;
const CMD_RESET: u8 = 0xfe;

/// What a write asks of the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// The guest requested a CPU reset.
    Reset,
}

/// The controller state.
#[derive(Debug)]
pub struct I8042 {
    status: u8,
    control: u8,
    outp: u8,
    data: Option<u8>,
    pending_cmd: Option<u8>,
}

impl Default for I8042 {
    fn default() -> Self {
        Self {
            status: SB_SYS_FLAG | SB_KBD_ENABLED,
            control: 0x07,
            outp: 0x01,
            data: None,
            pending_cmd: None,
        }
    }
}

impl I8042 {
    /// Creates a controller that has passed its self test.
    pub fn new() -> Self {
        Self::default()
    }

    fn status(&self) -> u8 {
        // The input buffer is always empty (bit 1 clear): we consume writes
        // at once, so `kb_wait()` in Linux never spins.
        let mut s = self.status;
        if self.data.is_some() {
            s |= SB_OUT_FULL;
        }
        s
    }

    /// Port read.
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            CMD_PORT => self.status(),
            DATA_PORT => self.data.take().unwrap_or(0),
            _ => 0xff,
        }
    }

    /// Port write.
    pub fn write(&mut self, port: u16, v: u8) -> Action {
        match port {
            CMD_PORT => {
                self.status |= SB_CMD_DATA;
                self.pending_cmd = None;
                match v {
                    CMD_RESET => return Action::Reset,
                    CMD_READ_CTR => self.data = Some(self.control),
                    CMD_WRITE_CTR | CMD_WRITE_OUTP => self.pending_cmd = Some(v),
                    CMD_SELF_TEST => self.data = Some(0x55),
                    CMD_KBD_TEST => self.data = Some(0x00),
                    CMD_READ_OUTP => self.data = Some(self.outp),
                    _ => {}
                }
                Action::None
            }
            DATA_PORT => {
                self.status &= !SB_CMD_DATA;
                match self.pending_cmd.take() {
                    Some(CMD_WRITE_CTR) => self.control = v,
                    Some(CMD_WRITE_OUTP) => {
                        self.outp = v;
                        // Bit 0 of the output port is the (active-low) reset line.
                        if v & 1 == 0 {
                            return Action::Reset;
                        }
                    }
                    _ => {
                        // A keyboard command: acknowledge it.
                        self.data = Some(0xfa);
                    }
                }
                Action::None
            }
            _ => Action::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_controller() {
        let mut k = I8042::new();
        assert_eq!(k.read(CMD_PORT) & 0x03, 0);
        assert_eq!(k.write(CMD_PORT, CMD_SELF_TEST), Action::None);
        assert_eq!(k.read(CMD_PORT) & SB_OUT_FULL, SB_OUT_FULL);
        assert_eq!(k.read(DATA_PORT), 0x55);
        assert_eq!(k.read(CMD_PORT) & SB_OUT_FULL, 0);
        k.write(CMD_PORT, CMD_WRITE_CTR);
        k.write(DATA_PORT, 0x45);
        k.write(CMD_PORT, CMD_READ_CTR);
        assert_eq!(k.read(DATA_PORT), 0x45);
        assert_eq!(k.write(CMD_PORT, CMD_RESET), Action::Reset);
        k.write(CMD_PORT, CMD_WRITE_OUTP);
        assert_eq!(k.write(DATA_PORT, 0xfe), Action::Reset);
    }
}
