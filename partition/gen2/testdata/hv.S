/*
 * The enlightened ABI from a program: post a message and signal an event
 * through the hypercall page, then receive two messages on SINT 2 of the
 * SynIC message page (printing their payloads), sleeping in the wait
 * hypercall and asking for the queued one with EOM, and find event flag
 * 7 set in SINT 2 of the event-flags page. Exits 0, or 1..6 at the step
 * that failed.
 */
	.globl _start
	.text
	hcpage = 0x7FFFFE000000
	simp   = 0x7FFFFE001000
	siefp  = 0x7FFFFE002000
_start:
	mov $0x5c, %ecx             /* HvPostMessage(&input) */
	lea input(%rip), %rdx
	xor %r8d, %r8d
	mov $hcpage, %rax
	call *%rax
	mov $1, %edi
	test %ax, %ax
	jnz fail
	mov $0x1005d, %ecx          /* HvSignalEvent, fast: conn 0x2005, flag 3 */
	mov $0x300002005, %rdx
	mov $hcpage, %rax
	call *%rax
	mov $2, %edi
	test %ax, %ax
	jnz fail
	mov $2, %r12d               /* messages to receive */
	mov $simp+0x200, %rbx       /* SINT 2's slot */
1:	cmpl $0, (%rbx)
	jne 2f
	mov $0x8002, %ecx           /* wait, at most 1 s */
	mov $1000000, %edx
	mov $hcpage, %rax
	call *%rax
	jmp 1b
2:	mov $3, %edi
	cmpl $1, (%rbx)             /* message type 1 */
	jne fail
	movzbl 4(%rbx), %edx        /* write(1, payload, size) */
	lea 16(%rbx), %rsi
	mov $1, %eax
	mov $1, %edi
	syscall
	movzbl 5(%rbx), %r13d       /* msg_pending */
	movl $0, (%rbx)             /* free the slot */
	test $1, %r13d
	jz 3f
	mov $0x8001, %ecx           /* EOM for SINT 2 */
	mov $2, %edx
	mov $hcpage, %rax
	call *%rax
3:	dec %r12d
	jnz 1b
	mov $siefp+0x200, %r14      /* SINT 2's event flags */
4:	testb $0x80, (%r14)         /* flag 7 */
	jnz 5f
	mov $0x8002, %ecx
	mov $1000000, %edx
	mov $hcpage, %rax
	call *%rax
	jmp 4b
5:	xor %edi, %edi
fail:
	mov $231, %eax
	syscall

	.data
	.balign 8
input:	.long 4, 0, 1, 5
	.ascii "hello"
	.fill 235, 1, 0
