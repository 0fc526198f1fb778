/*
 * mprotect widening a page already touched: map a page read-only, read
 * it, make it read/write, write it, exit 0. With argv[1] "compat", jump to
 * 32-bit code through selector 0x23 instead (which must fault, not run).
 */
	.globl _start
	.text
_start:
	cmpq $2, (%rsp)
	je compat
	mov $9, %eax                /* mmap(0, 4096, PROT_READ, PRIVATE|ANON) */
	xor %edi, %edi
	mov $4096, %esi
	mov $1, %edx
	mov $0x22, %r10d
	mov $-1, %r8
	xor %r9d, %r9d
	syscall
	mov %rax, %rbx
	mov (%rbx), %rcx            /* read: backed read-only */
	mov $10, %eax               /* mprotect(page, 4096, RW) */
	mov %rbx, %rdi
	mov $4096, %esi
	mov $3, %edx
	syscall
	test %rax, %rax
	jne fail
	movq $7, (%rbx)             /* write: allowed now */
	cmpq $7, (%rbx)
	jne fail
	mov $231, %eax
	xor %edi, %edi
	syscall
fail:
	mov $231, %eax
	mov $99, %edi
	syscall
compat:
	push $0x23
	lea 1f(%rip), %rax
	push %rax
	lretq
1:	syscall
	hlt
