/*
 * A ROM that listens for the ACPI power button with no BIOS: it makes
 * IRQ 9 level-triggered in the slave PIC's ELCR, sets PWRBTN_EN and
 * SCI_EN in the PM1 block (base 0x600), says 'R' on COM1 and polls
 * PWRBTN_STS. When the button is pressed it reports whether the SCI
 * reached the slave PIC's IRR (bit 1: IRQ 9) as 'I' (yes) or 'i',
 * clears the status (write 1), reports whether IRR dropped as 'L' (yes)
 * or 'l', and powers off (SLP_TYP 0, SLP_EN).
 */
	.code16
	.globl _start
_start:
	cli
	mov $0x4d1, %dx		/* ELCR2: IRQ 9 level-triggered */
	mov $0x02, %al
	out %al, %dx
	mov $0x602, %dx		/* PM1_EN: PWRBTN_EN */
	mov $0x0100, %ax
	out %ax, %dx
	mov $0x604, %dx		/* PM1_CNT: SCI_EN */
	mov $0x0001, %ax
	out %ax, %dx
	mov $'R', %al
	call putc
	mov $0x600, %dx		/* PM1_STS */
1:	in %dx, %ax
	test $0x0100, %ax
	jz 1b
	mov $0x0a, %al		/* OCW3: read IRR */
	out %al, $0xa0
	in $0xa0, %al
	mov $'I', %bl
	test $0x02, %al
	jnz 2f
	mov $'i', %bl
2:	mov %bl, %al
	call putc
	mov $0x600, %dx		/* clear PWRBTN_STS */
	mov $0x0100, %ax
	out %ax, %dx
	in $0xa0, %al
	mov $'L', %bl
	test $0x02, %al
	jz 3f
	mov $'l', %bl
3:	mov %bl, %al
	call putc
	mov $0x604, %dx		/* soft-off */
	mov $0x2000, %ax
	out %ax, %dx
4:	hlt
	jmp 4b

putc:
	push %dx
	mov $0x3f8, %dx
	out %al, %dx
	pop %dx
	ret

	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
