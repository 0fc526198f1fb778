/*
 * A large partition stays sparse: take physically contiguous pages with
 * HvCallPartitaAllocPages, 256 MiB at a time, until a run ends within
 * 256 MiB of the top of guest memory; write a pattern into the last page
 * of that run through the physical window, and print its guest physical
 * address (8 raw bytes on stdout). Exits 0, or 1 if an allocation failed
 * before the top.
 */
	.globl _start
	.text
	hcpage = 0x7FFFFE000000
	window = 0x7F0000000000
	chunk  = 65536              /* pages: 256 MiB */
_start:
	mov (%rsp), %r12            /* argc: argv[1] is the memory size in MiB */
	mov 16(%rsp), %rsi
	xor %r13, %r13              /* parse argv[1] */
1:	movzbl (%rsi), %eax
	test %eax, %eax
	jz 2f
	imul $10, %r13
	sub $'0', %eax
	add %rax, %r13
	inc %rsi
	jmp 1b
2:	shl $20, %r13               /* top of memory in bytes */
	sub $0x10000000, %r13       /* within 256 MiB of it */
3:	mov $0x8003, %ecx           /* alloc a chunk */
	mov $chunk, %edx
	lea out(%rip), %r8
	mov $hcpage, %rax
	call *%rax
	mov $1, %edi
	test %ax, %ax
	jnz fail
	mov out(%rip), %rbx
	add $0x10000000, %rbx       /* the run's end */
	cmp %r13, %rbx
	jb 3b
	sub $4096, %rbx             /* its last page */
	mov %rbx, out(%rip)
	mov $window, %rax
	add %rbx, %rax
	mov $0x5ca1ab1e0ddba11, %rcx
	mov %rcx, (%rax)
	mov $1, %eax                /* write(1, &out, 8) */
	mov $1, %edi
	lea out(%rip), %rsi
	mov $8, %edx
	syscall
	xor %edi, %edi
fail:
	mov $231, %eax
	syscall

	.data
out:	.quad 0
