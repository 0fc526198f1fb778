/*
 * A ROM that takes the timer through the IOAPIC and the local APIC in
 * 32-bit protected mode: it masks both 8259As, routes IOAPIC pin 0 (the
 * PIT's GSI 0) to vector 0x40 of APIC 0, enables its local APIC, sets the
 * PIT to about 1 kHz and halts until its handler (through the IDT, with
 * an EOI to the local APIC) has counted 10 interrupts; then it prints
 * "APIC-OK" on COM1 and powers off.
 * Build: as --32 -o apic.o apic.S && ld -m elf_i386 -Ttext=0 --oformat=binary -o apic.rom apic.o
 */
	.set ROM, 0xf0000		/* where the ROM's first byte is below 1 MiB */
	.set IDT, 0x1000
	.set COUNT, 0x500
	.set LAPIC, 0xfee00000
	.set IOAPIC, 0xfec00000

	.code16
	.globl _start
_start:
	cli
	mov $0xff, %al			/* mask both 8259As */
	out %al, $0x21
	out %al, $0xa1
	lgdtl %cs:gdtr
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $8, $ROM+pm

	.code32
pm:
	mov $16, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $0x7000, %esp
	movl $0, COUNT
	/* IDT entry 0x40: a 32-bit interrupt gate to handler */
	mov $ROM+handler, %eax
	mov %ax, IDT+0x40*8
	movw $8, IDT+0x40*8+2
	movw $0x8e00, IDT+0x40*8+4
	shr $16, %eax
	mov %ax, IDT+0x40*8+6
	lidt idtr+ROM
	/* local APIC: software enable, spurious vector 0xff */
	movl $0x1ff, LAPIC+0xf0
	/* IOAPIC pin 0: vector 0x40, fixed, physical, edge, unmasked, APIC 0 */
	movl $0x10, IOAPIC
	movl $0x40, IOAPIC+0x10
	movl $0x11, IOAPIC
	movl $0, IOAPIC+0x10
	/* PIT counter 0: mode 2, 1193 counts (about 1 kHz) */
	mov $0x34, %al
	out %al, $0x43
	mov $1193 & 0xff, %al
	out %al, $0x40
	mov $1193 >> 8, %al
	out %al, $0x40
	sti
1:	hlt
	cmpl $10, COUNT
	jb 1b
	cli
	mov $ROM+msg, %esi
	mov $0x3f8, %dx
2:	lodsb
	test %al, %al
	jz 3f
	out %al, %dx
	jmp 2b
3:	mov $0x604, %dx
	mov $0x2000, %ax
	out %ax, %dx
4:	hlt
	jmp 4b

handler:
	incl COUNT
	movl $0, LAPIC+0xb0		/* EOI */
	iret

msg:	.asciz "APIC-OK"
	.p2align 3
gdt:	.quad 0
	.quad 0x00cf9a000000ffff	/* flat 32-bit code */
	.quad 0x00cf92000000ffff	/* flat data */
gdtr:	.word 3*8-1
	.long ROM+gdt
idtr:	.word 0x41*8-1
	.long IDT

	.code16
	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
