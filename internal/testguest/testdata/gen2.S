/*
 * A Generation 2 test program: a static x86-64 Linux executable that
 * makes one system call the shim does not serve (500), prints a banner
 * and then a tick every 100 ms, for ever (the
 * root service's tests turn it off), or exits with status 0 after
 * printing the banner when argv has a second argument.
 * Build: as --64 -o gen2.o gen2.S && ld -static -o gen2 gen2.o
 */
	.globl _start
	.text
_start:
	mov (%rsp), %r12            /* argc */
	mov $500, %eax              /* unserved: ENOSYS, counted */
	syscall
	mov $1, %eax
	mov $1, %edi
	lea banner(%rip), %rsi
	mov $bannerlen, %edx
	syscall
	cmp $2, %r12
	jge quit
1:	mov $35, %eax               /* nanosleep(&100ms, 0) */
	lea delay(%rip), %rdi
	xor %esi, %esi
	syscall
	mov $1, %eax
	mov $1, %edi
	lea tick(%rip), %rsi
	mov $1, %edx
	syscall
	jmp 1b
quit:
	mov $231, %eax
	xor %edi, %edi
	syscall

	.data
banner:	.ascii "GEN2-GUEST-READY-9c1e\n"
	bannerlen = . - banner
tick:	.ascii "."
	.balign 8
delay:	.quad 0, 100000000
