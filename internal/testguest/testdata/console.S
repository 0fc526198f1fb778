/*
 * A master boot record that stays up: the guest the root service's tests
 * drive through the API. SeaBIOS loads it at 0x7C00. It
 *  - copies itself to LBA 3 through INT 13h (extended write), so a test
 *    can find the write in the image file after the partition stops;
 *  - reads LBA 2 through INT 13h and prints the string there;
 *  - turns on the ACPI power button (PWRBTN_EN in PM1 enable, SCI_EN in
 *    PM1 control) at the PM base the firmware programmed;
 *  - prints its token through INT 10h, then loops: halt until an
 *    interrupt, echo keystrokes (COM1 input, through SeaBIOS's serial
 *    console) back in upper case, reset the machine on '!' (the i8042's
 *    reset line), and power off when the power button's status bit is
 *    set, unless '#' made it deaf to the button.
 * Build: as --32 -o console.o console.S && ld -m elf_i386 -Ttext=0x7c00 --oformat=binary -o console.bin console.o
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
	/* write this sector to LBA 3 */
	mov $0x4300, %ax
	mov $0x80, %dl
	mov $dapw, %si
	int $0x13
	jc fail
	/* read LBA 2 to 0x8000 and print it */
	mov $0x42, %ah
	mov $0x80, %dl
	mov $dapr, %si
	int $0x13
	jc fail
	mov $0x8000, %si
	call print
	/* PM base from the PIIX4 PM function (00:01.3, PMBA at 0x40) */
	mov $0xcf8, %dx
	mov $0x80000b40, %eax
	out %eax, %dx
	mov $0xcfc, %dx
	in %dx, %eax
	and $0xffc0, %ax
	mov %ax, %di
	/* PM1_EN |= PWRBTN_EN; PM1_CNT |= SCI_EN */
	lea 2(%di), %dx
	in %dx, %ax
	or $0x100, %ax
	out %ax, %dx
	lea 4(%di), %dx
	in %dx, %ax
	or $1, %ax
	out %ax, %dx
	mov $token, %si
	call print
idle:
	sti
	hlt
	/* echo keystrokes in upper case: SeaBIOS's serial console turns
	 * COM1 input into keystrokes (its timer tick polls the UART), so
	 * read them through INT 16h and print through INT 10h */
rx:	mov $0x01, %ah
	int $0x16
	jz button
	xor %ah, %ah
	int $0x16
	/* '!' resets the machine through the i8042's reset line */
	cmp $'!', %al
	jne 5f
	mov $0xfe, %al
	out %al, $0x64
	/* '#' makes it deaf: it goes on listening for the power button but
	 * never powers off (a guest that ignores a shut down) */
5:	cmp $'#', %al
	jne 6f
	movb $1, deaf
6:	cmp $'a', %al
	jb 3f
	cmp $'z', %al
	ja 3f
	sub $0x20, %al
3:	mov $0x0e, %ah
	xor %bx, %bx
	int $0x10
	jmp rx
button:
	cmpb $0, deaf
	jne idle
	mov %di, %dx
	in %dx, %ax
	test $0x100, %ax
	jz idle
	/* clear the status, then sleep type 0 with SLP_EN: power off */
	mov $0x100, %ax
	out %ax, %dx
	lea 4(%di), %dx
	mov $0x2001, %ax
	out %ax, %dx
4:	hlt
	jmp 4b
fail:
	mov $failmsg, %si
	call print
	jmp idle

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

deaf:	.byte 0
token:	.asciz "CONSOLE-GUEST-READY-5e21\r\n"
failmsg: .asciz "CONSOLE-GUEST-DISK-FAILED\r\n"
/* disk address packets: size, reserved, count, buffer offset:segment, LBA */
dapw:	.byte 0x10, 0
	.word 1
	.word 0x7c00, 0
	.quad 3
dapr:	.byte 0x10, 0
	.word 1
	.word 0x8000, 0
	.quad 2
	.org 510
	.word 0xaa55
