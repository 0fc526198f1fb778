/*
 * HvCallPartitaAllocPages and FreePages: take 3 pages, write a pattern
 * into the first and third through the physical window, print their
 * guest physical address (8 raw bytes on stdout), check the refusals,
 * free them. Exits 0, or the step that failed.
 */
	.globl _start
	.text
	hcpage = 0x7FFFFE000000
	window = 0x7F0000000000
_start:
	mov $0x8003, %ecx           /* alloc 3 pages */
	mov $3, %edx
	lea out(%rip), %r8
	mov $hcpage, %rax
	call *%rax
	mov $1, %edi
	test %ax, %ax
	jnz fail
	mov out(%rip), %rbx
	mov $window, %rax
	add %rbx, %rax
	mov $0x1122334455667788, %rcx
	mov %rcx, (%rax)
	mov %rcx, 8192(%rax)
	mov $1, %eax                /* write(1, &out, 8) */
	mov $1, %edi
	lea out(%rip), %rsi
	mov $8, %edx
	syscall
	mov $0x8003, %ecx           /* 0 pages: invalid parameter */
	xor %edx, %edx
	lea out(%rip), %r8
	mov $hcpage, %rax
	call *%rax
	mov $2, %edi
	cmp $5, %ax
	jne fail
	mov $0x8004, %ecx           /* free with the wrong count: refused */
	mov %rbx, %rdx
	mov $2, %r8d
	mov $hcpage, %rax
	call *%rax
	mov $3, %edi
	cmp $5, %ax
	jne fail
	mov $0x8004, %ecx           /* free */
	mov %rbx, %rdx
	mov $3, %r8d
	mov $hcpage, %rax
	call *%rax
	mov $4, %edi
	test %ax, %ax
	jnz fail
	mov $1000, %eax             /* SysSynicWait, 1 ms: returns 0 */
	mov $1000, %edi
	syscall
	mov $5, %edi
	test %rax, %rax
	jnz fail
	xor %edi, %edi
fail:
	mov $231, %eax
	syscall

	.data
	.balign 8
out:	.quad 0
