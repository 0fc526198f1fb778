/*
 * Maps 1 GiB read/write and writes every page: in a small partition the
 * frames run out, which must stop the partition with a clear reason.
 */
	.globl _start
	.text
_start:
	mov $9, %eax                /* mmap(0, 1 GiB, RW, PRIVATE|ANON) */
	xor %edi, %edi
	mov $0x40000000, %esi
	mov $3, %edx
	mov $0x22, %r10d
	mov $-1, %r8
	xor %r9d, %r9d
	syscall
	mov $0x40000, %ecx          /* pages */
1:	movq $1, (%rax)
	add $4096, %rax
	loop 1b
	mov $231, %eax
	xor %edi, %edi
	syscall
