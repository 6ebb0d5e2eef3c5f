// SPDX-License-Identifier: GPL-3.0-or-later
//! GDT entries and their KVM segment form.

use kvm_bindings::kvm_segment;

/// Packs a GDT entry from flags, base and limit (Intel SDM vol. 3, 3.4.5).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << (56 - 24))
        | ((flags & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// GDT for the 64-bit Linux entry: null, code64, data, tss.
pub const GDT_LONG: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// GDT for the PVH 32-bit protected-mode entry: null, code32, data, tss.
pub const GDT_PVH: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xc09b, 0, 0xffff_ffff),
    gdt_entry(0xc093, 0, 0xffff_ffff),
    gdt_entry(0x008b, 0, 0x67),
];

fn base(entry: u64) -> u64 {
    ((entry & 0xff00_0000_0000_0000) >> 32)
        | ((entry & 0x0000_00ff_0000_0000) >> 16)
        | ((entry & 0x0000_0000_ffff_0000) >> 16)
}

fn limit(entry: u64) -> u32 {
    let l = ((entry & 0x000f_0000_0000_0000) >> 32) | (entry & 0x0000_0000_0000_ffff);
    let l = l as u32;
    if (entry >> 55) & 1 == 1 {
        (l << 12) | 0xfff
    } else {
        l
    }
}

/// The KVM segment for GDT entry `index` (selector = index * 8).
pub fn segment(entry: u64, index: u8) -> kvm_segment {
    let bit = |n: u32| ((entry >> n) & 1) as u8;
    let present = bit(47);
    kvm_segment {
        base: base(entry),
        limit: limit(entry),
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: bit(55),
        avl: bit(52),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code64_segment() {
        let s = segment(GDT_LONG[1], 1);
        assert_eq!(
            (s.selector, s.type_, s.l, s.db, s.present, s.s),
            (8, 0xb, 1, 0, 1, 1)
        );
        assert_eq!(s.limit, 0xffff_ffff);
        let d = segment(GDT_PVH[2], 2);
        assert_eq!((d.selector, d.type_, d.db, d.g, d.base), (16, 3, 1, 1, 0));
        let t = segment(GDT_PVH[3], 3);
        assert_eq!((t.limit, t.type_, t.g), (0x67, 0xb, 0));
    }
}
