/*
 * First touches: map 64 MiB and write one byte in every 64 KiB block
 * (1,024 page faults; fault-around backs the rest of each block), then
 * exit 0.
 */
	.globl _start
	.text
_start:
	mov $9, %eax                /* mmap(0, 64 MiB, RW, PRIVATE|ANON, -1, 0) */
	xor %edi, %edi
	mov $0x4000000, %esi
	mov $3, %edx
	mov $0x22, %r10d
	mov $-1, %r8
	xor %r9d, %r9d
	syscall
	mov %rax, %rbx
	mov $1024, %ecx
1:	movb $1, (%rbx)
	add $0x10000, %rbx
	dec %ecx
	jnz 1b
	mov $231, %eax
	xor %edi, %edi
	syscall
