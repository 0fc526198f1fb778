/*
 * A ROM that reprograms the PIT's counter 0 to its fastest rate (a count
 * of 2 in mode 2: 1.19 MHz asked) and takes every IRQ 0 it can while
 * spinning with interrupts on; each interrupt writes '.' to COM1.
 */
	.code16
	.globl _start
_start:
	cli
	xor %ax, %ax
	mov %ax, %ds
	mov %ax, %ss
	mov $0x7000, %sp
	movw $isr, 0x20			/* IVT entry 8: IRQ 0 after the ICW2 below */
	movw $0xf000, 0x22
	mov $0x11, %al			/* ICW1: edge, cascade, ICW4 follows */
	out %al, $0x20
	mov $0x08, %al			/* ICW2: vectors 8-15 */
	out %al, $0x21
	mov $0x04, %al			/* ICW3: slave on IR2 */
	out %al, $0x21
	mov $0x01, %al			/* ICW4: 8086 mode */
	out %al, $0x21
	mov $0xfe, %al			/* OCW1: only IRQ 0 */
	out %al, $0x21
	mov $0x34, %al			/* counter 0, low then high byte, mode 2 */
	out %al, $0x43
	mov $2, %al
	out %al, $0x40
	xor %al, %al
	out %al, $0x40
	sti
1:	jmp 1b

isr:
	push %ax
	push %dx
	mov $0x3f8, %dx
	mov $'.', %al
	out %al, %dx
	mov $0x20, %al			/* non-specific EOI */
	out %al, $0x20
	pop %dx
	pop %ax
	iret

	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
