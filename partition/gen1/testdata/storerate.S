/*
 * A ROM that times guest stores to RAM: forever, 1,000,000 byte stores
 * into 0x10000-0x1ffff, then one '.' on COM1. The time between dots is
 * the time of a million iterations of a store loop.
 */
	.code16
	.globl _start
_start:
	cli
	mov $0x1000, %ax
	mov %ax, %es
	mov $0x3f8, %dx
2:	mov $1000000, %ecx
	xor %di, %di
1:	mov %al, %es:(%di)
	inc %di
	dec %ecx
	jnz 1b
	mov $'.', %al
	out %al, %dx
	jmp 2b
	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
