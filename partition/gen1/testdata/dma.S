/*
 * A bare-metal ROM that reads a sector with bus-master DMA: it places the
 * PIIX IDE function's bus-master block at I/O 0xC000 (BAR4) and enables
 * I/O and bus mastering, builds a one-entry PRD table at 0x1000 pointing
 * at 0x8000, issues READ DMA for LBA 3, starts the bus master, waits for
 * its interrupt bit, and prints the NUL-terminated string that arrived at
 * 0x8000 on COM1 ("dma-error" if the bus master reports an error). Then it
 * powers off.
 * Build: as --32 -o dma.o dma.S && ld -m elf_i386 -Ttext=0 --oformat=binary -o dma.rom dma.o
 */
	.code16
	.globl _start
_start:
	cli
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
	/* start the bus master, device to memory */
	mov $0xc000, %dx
	mov $0x09, %al
	out %al, %dx
	mov $0xc002, %dx
1:	in %dx, %al
	test $0x04, %al
	jz 1b
	test $0x02, %al
	jnz error
	mov $0x8000, %si
	jmp print
error:
	mov $errmsg, %si
	mov %cs, %ax
	mov %ax, %ds
print:
	lodsb
	test %al, %al
	jz off
	mov $0x3f8, %dx
	out %al, %dx
	jmp print
off:
	mov $0x604, %dx
	mov $0x2000, %ax
	out %ax, %dx
2:	hlt
	jmp 2b
errmsg:	.asciz "dma-error"
	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
