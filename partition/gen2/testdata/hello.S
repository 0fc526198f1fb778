/*
 * A static x86-64 Linux program for the Generation 2 tests: it writes to
 * standard output, sets its FS base and reads through it, maps anonymous
 * memory and writes it, checks argc and that an unknown system call fails
 * with ENOSYS, then exits with status 7.
 * Build: as --64 -o hello.o hello.S && ld -static -o hello hello.o
 */
	.globl _start
	.text
_start:
	mov (%rsp), %r12           /* argc */
	mov $1, %eax               /* write(1, msg, len) */
	mov $1, %edi
	lea msg(%rip), %rsi
	mov $msglen, %edx
	syscall
	cmp $msglen, %rax
	jne fail

	mov $158, %eax             /* arch_prctl(ARCH_SET_FS, &tls) */
	mov $0x1002, %edi
	lea tls(%rip), %rsi
	syscall
	test %rax, %rax
	jne fail
	mov %fs:0, %rax
	mov $0x5a5a1234, %rcx
	cmp %rcx, %rax
	jne fail

	mov $9, %eax               /* mmap(0, 8192, RW, PRIVATE|ANON, -1, 0) */
	xor %edi, %edi
	mov $8192, %esi
	mov $3, %edx
	mov $0x22, %r10d
	mov $-1, %r8
	xor %r9d, %r9d
	syscall
	cmp $-4096, %rax
	ja fail
	movq $42, 4096(%rax)
	cmpq $42, 4096(%rax)
	jne fail

	mov $999, %eax             /* unknown: -ENOSYS */
	syscall
	cmp $-38, %rax
	jne fail

	cmp $3, %r12               /* argv[0] and two arguments */
	jne fail

	mov $1, %eax
	mov $1, %edi
	lea ok(%rip), %rsi
	mov $oklen, %edx
	syscall
	mov $231, %eax             /* exit_group(7) */
	mov $7, %edi
	syscall
	hlt

fail:
	mov $231, %eax
	mov $99, %edi
	syscall

	.data
msg:	.ascii "hello from CPL3\n"
	msglen = . - msg
ok:	.ascii "all checks passed\n"
	oklen = . - ok
	.balign 8
tls:	.quad 0x5a5a1234
