/*
 * A tiny firmware ROM for the worker's tests: 64 KiB, reset vector at
 * 0xFFF0. It prints a line on COM1 (0x3F8) and powers off through the
 * ACPI PM1 control register (PM base 0x600 + 4: SLP_EN, sleep type 0).
 * Build: as --32 -o hello.o hello.S && ld -m elf_i386 -Ttext=0 --oformat=binary -o hello.rom hello.o
 */
	.code16
	.section .text
	.globl _start
_start:
	cli
	xor %ax, %ax
	mov %ax, %ds
	mov $0x3f8, %dx
	mov $msg, %si
1:	cs lodsb
	test %al, %al
	jz 2f
	out %al, %dx
	jmp 1b
2:	mov $0x604, %dx
	mov $0x2000, %ax
	out %ax, %dx
3:	hlt
	jmp 3b
msg:	.asciz "Partita tiny ROM\r\n"
	.org 0xfff0
reset:
	ljmp $0xf000, $_start
	.org 0x10000
