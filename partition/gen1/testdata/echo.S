/*
 * A ROM that echoes COM1 input with no BIOS: it turns the UART's FIFOs
 * on, says '>', then polls LSR for data and writes every byte it reads
 * back to COM1, until it reads '.', when it powers off.
 */
	.code16
	.globl _start
_start:
	cli
	mov $0x3fa, %dx		/* FCR: FIFOs on and cleared, trigger 14 */
	mov $0xc7, %al
	out %al, %dx
	mov $0x3f8, %dx
	mov $'>', %al
	out %al, %dx
1:	mov $0x3fd, %dx		/* LSR: wait for DR */
2:	in %dx, %al
	test $0x01, %al
	jz 2b
	mov $0x3f8, %dx
	in %dx, %al
	cmp $'.', %al
	je 3f
	out %al, %dx
	jmp 1b
3:	mov $0x604, %dx		/* soft-off */
	mov $0x2000, %ax
	out %ax, %dx
4:	hlt
	jmp 4b
	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
