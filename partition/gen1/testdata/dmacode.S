/*
 * A bare-metal ROM that overwrites code it has run with bus-master DMA,
 * then runs it again: a processor that caches translated code (tcg) must
 * run what the disk put there. It copies a routine that prints 'A' to
 * 0x8000 and calls it, reads LBA 3 (a routine that prints 'B') over it
 * with READ DMA as dma.S does, calls it again, and powers off. COM1 reads
 * "AB" on a coherent machine, "AA" on one that ran the stale code.
 * Build: as --32 -o dmacode.o dmacode.S && ld -m elf_i386 -Ttext=0 --oformat=binary -o dmacode.rom dmacode.o
 */
	.code16
	.globl _start
_start:
	cli
	xor %ax, %ax
	mov %ax, %es
	mov %ax, %ss
	mov $0x7000, %sp
	mov %cs, %ax
	mov %ax, %ds
	/* copy routine A to 0000:8000 and run it */
	mov $routine, %si
	mov $0x8000, %di
	mov $routine_end-routine, %cx
	rep movsb
	lcall $0, $0x8000
	xor %ax, %ax
	mov %ax, %ds
	/* PCI 00:01.1 register 0x20 (BAR4) = 0xC001; register 0x04 = 5 */
	mov $0xcf8, %dx
	mov $0x80000920, %eax
	out %eax, %dx
	mov $0xcfc, %dx
	mov $0x0000c001, %eax
	out %eax, %dx
	mov $0xcf8, %dx
	mov $0x80000904, %eax
	out %eax, %dx
	mov $0xcfc, %dx
	mov $5, %ax
	out %ax, %dx
	/* PRD table: 0x8000, 512 bytes, end of table */
	movl $0x8000, 0x1000
	movl $0x80000200, 0x1004
	mov $0xc004, %dx
	mov $0x1000, %eax
	out %eax, %dx
	/* READ DMA, LBA 3, one sector */
	mov $0x1f6, %dx
	mov $0xe0, %al
	out %al, %dx
	mov $0x1f2, %dx
	mov $1, %al
	out %al, %dx
	mov $0x1f3, %dx
	mov $3, %al
	out %al, %dx
	mov $0x1f4, %dx
	xor %al, %al
	out %al, %dx
	mov $0x1f5, %dx
	out %al, %dx
	mov $0x1f7, %dx
	mov $0xc8, %al
	out %al, %dx
	/* start the bus master, device to memory, and wait for it */
	mov $0xc000, %dx
	mov $0x09, %al
	out %al, %dx
	mov $0xc002, %dx
1:	in %dx, %al
	test $0x04, %al
	jz 1b
	/* run what is at 0x8000 now */
	lcall $0, $0x8000
	mov $0x604, %dx
	mov $0x2000, %ax
	out %ax, %dx
2:	hlt
	jmp 2b

/* routine A: print 'A' on COM1, return far */
routine:
	mov $0x3f8, %dx
	mov $'A', %al
	out %al, %dx
	lret
routine_end:

	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
