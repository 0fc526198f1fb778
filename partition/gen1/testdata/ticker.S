/*
 * A ROM that writes to COM1 for ever, cycling through 'a'..'z': the
 * pause tests watch its output stop and start again.
 */
	.code16
	.globl _start
_start:
	cli
	mov $0x3f8, %dx
1:	mov $'a', %al
2:	out %al, %dx
	inc %al
	cmp $'z'+1, %al
	jne 2b
	jmp 1b
	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
