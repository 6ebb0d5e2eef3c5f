# SPDX-License-Identifier: GPL-3.0-or-later
#
# Minimal PVH guest (ELF64 with a XEN_ELFNOTE_PHYS32_ENTRY note), used by the
# PVH boot test and by vmm/bench.sh (QEMU microvm boots the same file).
# Entered in 32-bit protected mode, paging off, ebx = hvm_start_info.
# Prints "PVH ok <memmap_entries> <nr_modules>\n<cmdline>\n" (or "PVH bad magic\n") on the
# 16550 at 0x3f8, then resets through the i8042 (0xfe to port 0x64).
# Assemble with --defsym HANG=1 to spin forever after printing instead.

	.section .note.Xen, "a", @note
	.balign 4
	.long	4			# namesz
	.long	4			# descsz
	.long	18			# XEN_ELFNOTE_PHYS32_ENTRY
	.asciz	"Xen"
	.balign 4
	.long	_start
	.balign 4

	.code32
	.text
	.globl _start
_start:
	cli
	mov	$0x80000, %esp		# PVH gives no stack
	cmpl	$0x336ec578, (%ebx)
	jne	bad
	mov	$msg_ok, %esi
	call	puts
	mov	48(%ebx), %eax		# memmap_entries
	cmp	$9, %eax
	jbe	1f
	mov	$9, %eax
1:	add	$'0', %al
	call	putc
	mov	$' ', %al
	call	putc
	mov	12(%ebx), %eax		# nr_modules (the initrd)
	cmp	$9, %eax
	jbe	7f
	mov	$9, %eax
7:	add	$'0', %al
	call	putc
	mov	$'\n', %al
	call	putc
	mov	24(%ebx), %esi		# cmdline_paddr (low 32 bits)
	test	%esi, %esi
	jz	2f
	mov	$200, %ecx		# print at most 200 bytes of it
3:	movb	(%esi), %al
	test	%al, %al
	jz	2f
	call	putc
	inc	%esi
	dec	%ecx
	jnz	3b
2:	mov	$'\n', %al
	call	putc
	jmp	done
bad:
	mov	$msg_bad, %esi
	call	puts
done:
.ifdef HANG
4:	jmp	4b
.endif
	mov	$0xfe, %al
	out	%al, $0x64
5:	hlt
	jmp	5b

putc:
	mov	$0x3f8, %dx
	out	%al, %dx
	ret

puts:
	movb	(%esi), %al
	test	%al, %al
	jz	6f
	call	putc
	inc	%esi
	jmp	puts
6:	ret

	.section .rodata
msg_ok:
	.asciz "PVH ok "
msg_bad:
	.asciz "PVH bad magic\n"
