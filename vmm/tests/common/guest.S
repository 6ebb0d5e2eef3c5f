# SPDX-License-Identifier: GPL-3.0-or-later
#
# Hostile-guest script interpreter. Booted by anchor-vmm with the Linux 64-bit
# boot protocol: long mode, identity-mapped first 4 GiB, rsi = zero page.
# The script (24-byte records {op u32, size u32, addr u64, val u64}) is the
# initrd: zero page offsets 0x218 (ramdisk_image) and 0x21c (ramdisk_size).
# Serial output goes straight to the 16550 THR at port 0x3f8.
#
# Registers: rbx = current record, r14 = end of script,
#            r8/r9 = REPEAT body start/end, r10 = REPEAT iterations left.

	.code64
	.text
	.globl _start
_start:
	cli
	mov	$0x1ff000, %rsp		# below the script scratch area
	mov	0x218(%rsi), %ebx	# ramdisk_image
	mov	0x21c(%rsi), %eax	# ramdisk_size
	xor	%edx, %edx
	mov	$24, %ecx
	div	%ecx			# eax = number of records
	imul	$24, %rax, %rax
	lea	(%rbx,%rax), %r14
	xor	%r10, %r10
	xor	%r8, %r8
	xor	%r9, %r9

next:
	test	%r10, %r10
	jz	1f
	cmp	%r9, %rbx
	jne	1f
	dec	%r10
	jz	1f
	mov	%r8, %rbx
1:
	cmp	%r14, %rbx
	jae	eos
	mov	(%rbx), %eax		# op
	mov	4(%rbx), %ecx		# size
	mov	8(%rbx), %rdi		# addr
	mov	16(%rbx), %rbp		# val
	add	$24, %rbx
	cmp	$11, %eax
	ja	badop
	jmp	*optable(,%rax,8)

op_end:
	lea	msg_end(%rip), %rsi
	call	puts
reset:
	mov	$0xfe, %al
	out	%al, $0x64
2:	cli
	hlt
	jmp	2b

eos:
	lea	msg_eos(%rip), %rsi
	call	puts
	jmp	reset

badop:
	lea	msg_badop(%rip), %rsi
	call	puts
	jmp	next

op_write:
	cmp	$1, %ecx
	je	3f
	cmp	$2, %ecx
	je	4f
	cmp	$4, %ecx
	je	5f
	mov	%rbp, (%rdi)
	jmp	next
3:	mov	%bpl, (%rdi)
	jmp	next
4:	mov	%bp, (%rdi)
	jmp	next
5:	mov	%ebp, (%rdi)
	jmp	next

# load rax from (rdi) with size ecx, zero-extended
load:
	cmp	$1, %ecx
	je	3f
	cmp	$2, %ecx
	je	4f
	cmp	$4, %ecx
	je	5f
	mov	(%rdi), %rax
	ret
3:	movzbl	(%rdi), %eax
	ret
4:	movzwl	(%rdi), %eax
	ret
5:	mov	(%rdi), %eax
	ret

op_read:
	call	load
	mov	%rax, %rbp
	mov	$'R', %al
	call	putc
	mov	$' ', %al
	call	putc
	mov	$16, %ecx
	call	puthex
	call	newline
	jmp	next

op_outb:
	mov	%edi, %edx
	mov	%ebp, %eax
	out	%al, %dx
	jmp	next

op_inb:
	mov	%edi, %edx
	in	%dx, %al
	movzbl	%al, %ebp
	mov	$'I', %al
	call	putc
	mov	$' ', %al
	call	putc
	mov	$2, %ecx
	call	puthex
	call	newline
	jmp	next

op_print:
	mov	$8, %ecx
6:	mov	%bpl, %al
	test	%al, %al
	jz	7f
	call	putc
7:	shr	$8, %rbp
	dec	%ecx
	jnz	6b
	call	newline
	jmp	next

op_repeat:
	imul	$24, %rcx, %rcx
	mov	%rbx, %r8
	lea	(%rbx,%rcx), %r9
	cmp	%r14, %r9
	jbe	8f
	mov	%r14, %r9
8:	mov	%rbp, %r10
	test	%r10, %r10
	jnz	next
	mov	%r9, %rbx		# zero iterations: skip the body
	jmp	next

op_triple:
	lidt	empty_idt(%rip)
	ud2

op_hlt:
	cli
	hlt
	jmp	next

# CALL: run the code at addr (scratch RAM the script wrote) with rbp = val;
# it returns with `ret` and may clobber rax, rcx, rdx, rsi, rdi, r11, rbp.
op_call:
	push	%rbx
	push	%r8
	push	%r9
	push	%r10
	push	%r14
	call	*%rdi
	pop	%r14
	pop	%r10
	pop	%r9
	pop	%r8
	pop	%rbx
	jmp	next

op_poll:
	# mask val to size
	mov	$-1, %r15
	cmp	$8, %ecx
	jae	10f
	mov	%ecx, %r12d
	lea	(,%rcx,8), %ecx
	mov	$1, %r15
	shl	%cl, %r15
	dec	%r15
	and	%r15, %rbp
	mov	%r12d, %ecx
10:	jmp	poll

# POLLBITS size addr bits: until every bit of `bits` is set in the value at addr (at most
# 1e6 reads), then "P ok" or "P timeout" (an interrupt the device raises from another
# thread shows in the local APIC's IRR a little after the used ring it follows).
op_pollbits:
	mov	%rbp, %r15

# Both polls: until (value at addr & r15) == rbp.
poll:
	mov	$1000000, %r11d
	mov	%ecx, %r12d
10:	mov	%r12d, %ecx
	call	load
	and	%r15, %rax
	cmp	%rbp, %rax
	je	11f
	dec	%r11d
	jnz	10b
	lea	msg_ptimeout(%rip), %rsi
	call	puts
	jmp	next
11:	lea	msg_pok(%rip), %rsi
	call	puts
	jmp	next

# ---- output helpers (clobber rax, rdx, rsi, ecx where noted) ----
putc:
	mov	$0x3f8, %dx
	out	%al, %dx
	ret

newline:
	mov	$'\n', %al
	jmp	putc

puts:					# rsi = NUL-terminated string
	mov	(%rsi), %al
	test	%al, %al
	jz	12f
	call	putc
	inc	%rsi
	jmp	puts
12:	ret

puthex:					# print low ecx nibbles of rbp, msb first
	mov	%ecx, %r13d
13:	dec	%r13d
	lea	(,%r13,4), %ecx
	mov	%rbp, %rax
	shr	%cl, %rax
	and	$0xf, %eax
	lea	hexdigits(%rip), %rsi
	mov	(%rsi,%rax), %al
	call	putc
	test	%r13d, %r13d
	jnz	13b
	ret

	.section .rodata
	.balign 8
optable:
	.quad op_end, op_write, op_read, op_outb, op_inb
	.quad op_print, op_repeat, op_triple, op_hlt, op_poll
	.quad op_call, op_pollbits
	.balign 8
empty_idt:
	.word 0
	.quad 0
hexdigits:
	.ascii "0123456789abcdef"
msg_end:
	.asciz "END\n"
msg_eos:
	.asciz "EOS\n"
msg_badop:
	.asciz "BADOP\n"
msg_pok:
	.asciz "P ok\n"
msg_ptimeout:
	.asciz "P timeout\n"
