/*
 * A ROM that resets the machine about 100 ms after it starts, every
 * time: it prints 'R' on COM1, waits for 6,666 toggles of the refresh
 * bit of port 0x61 (15 us each), and pulses the reset line through the
 * i8042 (command 0xFE). Under the root, each reset is a power cycle.
 */
	.code16
	.globl _start
_start:
	cli
	mov $0x3f8, %dx
	mov $'R', %al
	out %al, %dx
	xor %cx, %cx
	in $0x61, %al
	and $0x10, %al
	mov %al, %bl
1:	in $0x61, %al
	and $0x10, %al
	cmp %al, %bl
	je 1b
	mov %al, %bl
	inc %cx
	cmp $6666, %cx
	jb 1b
	mov $0xfe, %al
	out %al, $0x64
2:	hlt
	jmp 2b
	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
