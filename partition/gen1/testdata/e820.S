/*
 * A master boot record that prints the memory map the BIOS reports
 * through INT 15h EAX=E820h on COM1 (through INT 10h), one entry a line:
 * base, length and type in hex, then "E820-END", waits 100 ms for the
 * BIOS's serial console to flush and powers off (as mbr.S).
 * Build: as --32 -o e820.o e820.S && ld -m elf_i386 -Ttext=0x7c00 --oformat=binary -o e820.bin e820.o
 */
	.code16
	.globl _start
_start:
	cli
	xor %ax, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $0x7c00, %sp
	sti
	xor %ebx, %ebx
next:
	mov $0xe820, %eax
	mov $0x534d4150, %edx		/* 'SMAP' */
	mov $20, %ecx
	mov $0x9000, %di
	int $0x15
	jc done
	cmp $0x534d4150, %eax
	jne done
	push %ebx
	mov $0x9007, %si		/* base, most significant byte first */
	mov $8, %cx
	call hexbytes
	call space
	mov $0x900f, %si		/* length */
	mov $8, %cx
	call hexbytes
	call space
	mov $0x9013, %si		/* type */
	mov $4, %cx
	call hexbytes
	mov $crlf, %si
	call print
	pop %ebx
	test %ebx, %ebx
	jnz next
done:
	mov $endmsg, %si
	call print
	/* INT 15h AH=86h: wait 100 ms so the BIOS's serial console flushes */
	mov $0x86, %ah
	mov $0x0001, %cx
	mov $0x86a0, %dx
	int $0x15
	/* power off through PM1 control at the PM base the firmware set */
	mov $0xcf8, %dx
	mov $0x80000b40, %eax
	out %eax, %dx
	mov $0xcfc, %dx
	in %dx, %eax
	and $0xffc0, %ax
	add $4, %ax
	mov %ax, %dx
	mov $0x2000, %ax
	out %ax, %dx
1:	hlt
	jmp 1b

/* hexbytes: print %cx bytes from %ds:%si downwards as hex */
hexbytes:
	mov (%si), %al
	call hexbyte
	dec %si
	loop hexbytes
	ret

hexbyte:
	push %ax
	shr $4, %al
	call nibble
	pop %ax
	and $0x0f, %al
nibble:
	cmp $10, %al
	jb 1f
	add $'A'-'0'-10, %al
1:	add $'0', %al
putc:
	push %bx
	mov $0x0e, %ah
	xor %bx, %bx
	int $0x10
	pop %bx
	ret

space:
	mov $' ', %al
	jmp putc

/* print the NUL-terminated string at %ds:%si */
print:
	lodsb
	test %al, %al
	jz 2f
	call putc
	jmp print
2:	ret

crlf:	.asciz "\r\n"
endmsg:	.asciz "E820-END\r\n"

	.org 510
	.byte 0x55, 0xaa
