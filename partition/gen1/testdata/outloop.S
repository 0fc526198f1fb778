/*
 * A ROM that writes to the POST port forever: every OUT is a port-I/O
 * exit, for measuring how many exits per second a run loop sustains.
 */
	.code16
	.globl _start
_start:
	cli
	xor %al, %al
1:	out %al, $0x80
	inc %al
	jmp 1b
	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
