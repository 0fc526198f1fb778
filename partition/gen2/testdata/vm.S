/*
 * Address space beyond the partition's memory, as the Go runtime uses
 * it: reserve 1 GiB with PROT_NONE, commit 64 KiB of it with MAP_FIXED
 * read/write, touch every page, and check that a page of the reservation
 * left PROT_NONE faults (argv[1] == "touch") or exit 0.
 */
	.globl _start
	.text
_start:
	mov $9, %eax                /* mmap(0, 1 GiB, PROT_NONE, PRIVATE|ANON) */
	xor %edi, %edi
	mov $0x40000000, %esi
	xor %edx, %edx
	mov $0x22, %r10d
	mov $-1, %r8
	xor %r9d, %r9d
	syscall
	cmp $-4096, %rax
	ja fail
	mov %rax, %rbx              /* the reservation */
	lea 0x100000(%rbx), %rdi    /* mmap(res+1M, 64K, RW, FIXED|PRIVATE|ANON) */
	mov $9, %eax
	mov $0x10000, %esi
	mov $3, %edx
	mov $0x32, %r10d
	mov $-1, %r8
	xor %r9d, %r9d
	syscall
	lea 0x100000(%rbx), %rcx
	cmp %rcx, %rax
	jne fail
	mov $16, %ecx               /* touch the 16 pages */
1:	movq %rcx, (%rax)
	add $4096, %rax
	loop 1b
	mov (%rsp), %rax            /* argc */
	cmp $2, %rax
	jne done
	movq $1, 0x200000(%rbx)     /* PROT_NONE: a fault */
done:
	mov $231, %eax
	xor %edi, %edi
	syscall
fail:
	mov $231, %eax
	mov $99, %edi
	syscall
