// SPDX-License-Identifier: GPL-3.0-or-later
//! A device's interrupt line, whatever the interrupt controller behind it: a KVM irqfd
//! (in-kernel controller) or a pin of a controller the VMM emulates (x86_64: the
//! userspace IOAPIC of `arch::x86_64::ioapic`). Devices only ever call [`IrqLine::trigger`].

use std::fmt;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

/// Something that delivers one edge of an interrupt.
pub trait Trigger: Send + Sync {
    /// Deliver the interrupt once. Errors are for the caller to ignore or count: an
    /// interrupt is best effort and never stops a device.
    fn trigger(&self) -> std::io::Result<()>;
}

impl Trigger for EventFd {
    fn trigger(&self) -> std::io::Result<()> {
        self.write(1)
    }
}

/// One interrupt line.
#[derive(Clone)]
pub struct IrqLine(Option<Arc<dyn Trigger>>);

impl fmt::Debug for IrqLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "IrqLine"
        } else {
            "IrqLine(none)"
        })
    }
}

impl IrqLine {
    /// A line delivered by `t`.
    pub fn new(t: Arc<dyn Trigger>) -> Self {
        Self(Some(t))
    }

    /// A line over a KVM irqfd.
    pub fn eventfd(e: EventFd) -> Self {
        Self(Some(Arc::new(e)))
    }

    /// A line connected to nothing (unit tests).
    pub fn none() -> Self {
        Self(None)
    }

    /// Raise the interrupt once.
    pub fn trigger(&self) -> std::io::Result<()> {
        match &self.0 {
            Some(t) => t.trigger(),
            None => Ok(()),
        }
    }
}

impl From<EventFd> for IrqLine {
    fn from(e: EventFd) -> Self {
        Self::eventfd(e)
    }
}

impl vm_superio::Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        IrqLine::trigger(self)
    }
}
