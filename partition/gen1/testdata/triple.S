/*
 * A ROM that triple-faults: with a GDT and an IDT of limit 0 it enters
 * protected mode and jumps to selector 8, past the GDT's end. The #GP
 * cannot be delivered (no IDT), nor can the #DF that follows: shutdown.
 * (In real mode this machine's KVM emulator does not apply the IDT limit,
 * so the fault has to happen in protected mode.)
 */
	.code16
	.globl _start
_start:
	cli
	lidt %cs:zero
	lgdt %cs:zero
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmp $0x8, $0
1:	jmp 1b
zero:	.word 0, 0, 0
	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
