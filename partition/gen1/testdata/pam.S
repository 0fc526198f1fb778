/*
 * A ROM that exercises the i440FX PAM registers through PCI configuration
 * mechanism #1 and reports on COM1:
 *   1. 0xC0000 before any PAM write: PCI side, nothing there -> 0xFF
 *   2. PAM1 = 0x33 (RAM read/write), write 'Z', read it back -> 'Z'
 *   3. PAM1 = 0x11 (RAM read-only), write 'Q', read back -> still 'Z'
 * then powers off.
 */
	.code16
	.globl _start
_start:
	cli
	mov $0xc000, %ax
	mov %ax, %es
	mov %es:0, %al
	call putc
	mov $0x33, %bl
	call setpam1
	movb $'Z', %es:0
	mov %es:0, %al
	call putc
	mov $0x11, %bl
	call setpam1
	movb $'Q', %es:0
	mov %es:0, %al
	call putc
	mov $0x604, %dx
	mov $0x2000, %ax
	out %ax, %dx
1:	hlt
	jmp 1b

/* setpam1: PAM1 (00:00.0 register 0x5A) = %bl */
setpam1:
	mov $0xcf8, %dx
	mov $0x80000058, %eax
	out %eax, %dx
	mov $0xcfe, %dx
	mov %bl, %al
	out %al, %dx
	ret

putc:
	mov $0x3f8, %dx
	out %al, %dx
	ret

	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
