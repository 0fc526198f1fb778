/*
 * A ROM that times port writes: forever, 1,000,000 writes to the POST
 * port 0x80, then one '.' on COM1. The time between dots is the time of
 * a million port-I/O round trips from a guest loop.
 */
	.code16
	.globl _start
_start:
	cli
	mov $0x3f8, %dx
2:	mov $1000000, %ecx
1:	out %al, $0x80
	dec %ecx
	jnz 1b
	mov $'.', %al
	out %al, %dx
	jmp 2b
	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
