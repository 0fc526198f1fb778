/*
 * A bare-metal ROM (no BIOS) that drives the primary ATA channel with PIO:
 * it writes two sectors at LBA 5 (WRITE SECTORS), each filled with the
 * word pattern 0x5041 ("AP") followed by its sector number, flushes the
 * cache, reports "ok" or "err" on COM1 and powers off.
 * Build: as --32 -o ata.o ata.S && ld -m elf_i386 -Ttext=0 --oformat=binary -o ata.rom ata.o
 */
	.code16
	.globl _start
_start:
	cli
	call wait_ready
	mov $0x1f6, %dx		/* device: master, LBA mode */
	mov $0xe0, %al
	out %al, %dx
	mov $0x1f2, %dx		/* sector count 2 */
	mov $2, %al
	out %al, %dx
	mov $0x1f3, %dx		/* LBA 5 */
	mov $5, %al
	out %al, %dx
	mov $0x1f4, %dx
	xor %al, %al
	out %al, %dx
	mov $0x1f5, %dx
	out %al, %dx
	mov $0x1f7, %dx		/* WRITE SECTORS */
	mov $0x30, %al
	out %al, %dx
	mov $0, %si		/* sector index */
next_sector:
	call wait_drq
	jc fail
	mov $0x1f0, %dx
	mov $255, %cx
1:	mov $0x5041, %ax
	out %ax, %dx
	loop 1b
	mov %si, %ax		/* last word: the sector's index */
	out %ax, %dx
	inc %si
	cmp $2, %si
	jne next_sector
	call wait_ready
	mov $0x1f7, %dx		/* FLUSH CACHE */
	mov $0xe7, %al
	out %al, %dx
	call wait_ready
	mov $0x1f7, %dx
	in %dx, %al
	test $1, %al		/* ERR */
	jnz fail
	mov $'o', %al
	call putc
	mov $'k', %al
	call putc
	jmp off
fail:
	mov $'e', %al
	call putc
	mov $'r', %al
	call putc
	call putc
off:
	mov $0x604, %dx
	mov $0x2000, %ax
	out %ax, %dx
2:	hlt
	jmp 2b

/* wait until BSY clears */
wait_ready:
	mov $0x1f7, %dx
3:	in %dx, %al
	test $0x80, %al
	jnz 3b
	ret

/* wait for DRQ; carry set on ERR */
wait_drq:
	mov $0x1f7, %dx
4:	in %dx, %al
	test $1, %al
	jnz 5f
	test $0x08, %al
	jz 4b
	clc
	ret
5:	stc
	ret

putc:
	mov $0x3f8, %dx
	out %al, %dx
	ret

	.org 0xfff0
	ljmp $0xf000, $_start
	.org 0x10000
