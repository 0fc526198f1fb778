/*
 * A master boot record for the worker's SeaBIOS test. SeaBIOS loads it at
 * 0x7C00 and jumps to it. It prints a token through INT 10h (teletype),
 * reads LBA 2 through INT 13h (extended read) to 0x8000 and prints the
 * string stored there, waits 100 ms through INT 15h AH=86h so the BIOS's
 * serial console can flush, then powers off through the ACPI PM1 control
 * register (SLP_EN, sleep type 0) at the PM base the firmware programmed.
 * Build: as --32 -o mbr.o mbr.S && ld -m elf_i386 -Ttext=0x7c00 --oformat=binary -o mbr.bin mbr.o
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
	mov $token, %si
	call print
	mov $0x42, %ah
	mov $0x80, %dl
	mov $dap, %si
	int $0x13
	jc fail
	mov $0x8000, %si
	call print
	jmp off
fail:
	mov $failmsg, %si
	call print
off:
	/* let the BIOS's serial console flush: INT 15h AH=86h, wait 100 ms
	 * (SeaBIOS times it with the RTC's periodic interrupt) */
	mov $0x86, %ah
	mov $0x0001, %cx
	mov $0x86a0, %dx
	int $0x15
	/* power off: PM1 control is at the PM base the firmware programmed
	 * into the PIIX4 PM function (00:01.3, PMBA at 0x40) + 4 */
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

/* print the NUL-terminated string at %ds:%si with INT 10h, AH=0Eh */
print:
	lodsb
	test %al, %al
	jz 2f
	mov $0x0e, %ah
	xor %bx, %bx
	int $0x10
	jmp print
2:	ret

token:	.asciz "MBR-TOKEN-7f3a\r\n"
failmsg: .asciz "MBR-READ-FAILED\r\n"
/* disk address packet: size, reserved, count, buffer offset:segment, LBA */
dap:	.byte 0x10, 0
	.word 1
	.word 0x8000, 0
	.quad 2
	.org 510
	.word 0xaa55
