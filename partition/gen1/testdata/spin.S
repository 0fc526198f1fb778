/*
 * A ROM that spins with interrupts off: only a kick gets the processor
 * back.
 */
	.code16
	.globl _start
_start:
	cli
1:	jmp 1b
	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
