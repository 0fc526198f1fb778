/*
 * Faults on purpose, chosen by argv[1]: "kernel" reads the kernel area
 * (#PF), "ud" executes ud2 (#UD), "io" writes a port (#GP: no I/O
 * permission at CPL3), "doorbell" reads the doorbell port (allowed, but
 * only a 32-bit write is a doorbell), "efault" passes write() a pointer
 * outside its memory and exits with the result as status.
 */
	.globl _start
	.text
_start:
	mov 16(%rsp), %rsi         /* argv[1] */
	movzbl (%rsi), %eax
	cmp $'k', %al
	je kernel
	cmp $'u', %al
	je ud
	cmp $'i', %al
	je io
	cmp $'e', %al
	je efault
	cmp $'d', %al
	je doorbell
	jmp done
kernel:
	mov 0x1000, %rax
	jmp done
ud:
	ud2
io:
	mov $0x80, %dx
	out %al, %dx
	jmp done
doorbell:
	mov $0x88, %dx
	in %dx, %al
	jmp done
efault:
	mov $1, %eax
	mov $1, %edi
	mov $0x10, %rsi
	mov $4, %edx
	syscall
	neg %eax                    /* exit status EFAULT (14) */
	mov %eax, %edi
	mov $231, %eax
	syscall
done:
	mov $231, %eax
	xor %edi, %edi
	syscall
