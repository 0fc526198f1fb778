/*
 * A hostile program: it attacks the platform under it in the way its
 * name says (argv[0] after its last '-', so a partition named
 * "attack-int80" runs the int80 attack):
 *
 *   int80     int 0x80, the 32-bit system call gate
 *   sysenter  sysenter
 *   hlt, cli, rdmsr, cr3   privileged instructions
 *   out       a port write
 *   jump      a jump into unmapped memory
 *   stub      a jump into the platform's own code page (0x10110)
 *   vsyscall  a call into the kernel's legacy vsyscall page
 *   stack     a push through a non-canonical stack pointer
 *   smc       self-modifying code: writes code into a page it maps
 *             read-write-execute and runs it (it exits 42)
 *   procs     fork, vfork, clone of a process, execve, ptrace, kill and
 *             tgkill of other processes, open, openat, socket, mount,
 *             reboot, init_module, ioctl, memfd_create,
 *             process_vm_writev, setuid, unshare, seccomp, bpf,
 *             io_uring_setup, all of which must fail (exit 0 if they
 *             did, else the index of the one that did not, plus 10)
 *
 * Every attack but smc and procs must end the partition with a fault.
 */
	.globl _start
	.text
_start:
	mov 8(%rsp), %rsi           /* argv[0] */
	mov %rsi, %rdi              /* find its last '-' */
1:	movzbl (%rsi), %eax
	test %eax, %eax
	jz 2f
	cmp $'-', %al
	jne 3f
	lea 1(%rsi), %rdi
3:	inc %rsi
	jmp 1b
2:	movzwl (%rdi), %eax         /* the mode's first two letters */
	movzbl 2(%rdi), %ecx
	cmp $0x6e69, %ax            /* "in" */
	je int80
	cmp $0x7973, %ax            /* "sy" */
	je sysenter
	cmp $0x6c68, %ax            /* "hl" */
	je hlt
	cmp $0x6c63, %ax            /* "cl" */
	je cli
	cmp $0x6472, %ax            /* "rd" */
	je rdmsr
	cmp $0x7263, %ax            /* "cr" */
	je cr3
	cmp $0x756f, %ax            /* "ou" */
	je out
	cmp $0x756a, %ax            /* "ju" */
	je jump
	cmp $0x7376, %ax            /* "vs" */
	je vsyscall
	cmp $0x6d73, %ax            /* "sm" */
	je smc
	cmp $0x7270, %ax            /* "pr" */
	je procs
	cmp $0x7473, %ax            /* "st": stub or stack */
	jne unknown
	cmp $'u', %cl
	je stub
	jmp stack
unknown:
	mov $99, %edi
	jmp exit

int80:
	mov $39, %eax               /* getpid, the 32-bit way */
	int $0x80
	jmp survived
sysenter:
	sysenter
	jmp survived
hlt:
	hlt
	jmp survived
cli:
	cli
	jmp survived
rdmsr:
	mov $0xC0000080, %ecx       /* EFER */
	rdmsr
	jmp survived
cr3:
	mov %cr3, %rax
	jmp survived
out:
	mov $0x80, %dx
	out %al, %dx
	jmp survived
jump:
	mov $0x5000000000, %rax
	jmp *%rax
stub:
	mov $39, %eax
	mov $0x10110, %rbx
	jmp *%rbx
vsyscall:
	xor %edi, %edi
	mov $0xffffffffff600400, %rax   /* time(NULL) */
	call *%rax
	jmp survived
stack:
	mov $0x8000000000000000, %rsp
	push %rax
	jmp survived

smc:
	mov $9, %eax                /* mmap(0, 4096, RWX, PRIVATE|ANON, -1, 0) */
	xor %edi, %edi
	mov $4096, %esi
	mov $7, %edx
	mov $0x22, %r10d
	mov $-1, %r8
	xor %r9d, %r9d
	syscall
	cmp $-4096, %rax
	ja survived
	mov %rax, %rbx
	lea code(%rip), %rsi        /* copy the code there */
	mov %rbx, %rdi
	mov $codelen, %ecx
	rep movsb
	movb $42, 1(%rbx)           /* and change it: mov $42, %edi */
	jmp *%rbx

procs:
	lea calls(%rip), %rbx
	mov $10, %r12d
4:	mov (%rbx), %rax
	cmp $-1, %rax
	je 5f
	mov 8(%rbx), %rdi
	mov 16(%rbx), %rsi
	mov 24(%rbx), %rdx
	xor %r10d, %r10d
	xor %r8d, %r8d
	xor %r9d, %r9d
	syscall
	test %rax, %rax
	jns 6f                      /* it did not fail */
	add $32, %rbx
	inc %r12d
	jmp 4b
5:	xor %edi, %edi
	jmp exit
6:	mov %r12d, %edi
	jmp exit

survived:
	mov $98, %edi
exit:
	mov $231, %eax
	syscall

	.data
code:	mov $1, %edi                /* patched to 42 before it runs */
	mov $231, %eax
	syscall
codelen = . - code
path:	.asciz "/etc/passwd"
sh:	.asciz "/bin/sh"
	.balign 8
calls:	/* number, three arguments */
	.quad 57, 0, 0, 0                 /* fork */
	.quad 58, 0, 0, 0                 /* vfork */
	.quad 56, 17, 0, 0                /* clone(SIGCHLD): a process */
	.quad 59, sh, 0, 0                /* execve */
	.quad 101, 0, 0, 0                /* ptrace(TRACEME) */
	.quad 101, 16, 1, 0               /* ptrace(ATTACH, 1) */
	.quad 62, 12345, 9, 0             /* kill(12345, SIGKILL) */
	.quad 62, -1, 9, 0                /* kill(-1, SIGKILL): everything */
	.quad 234, 12345, 12345, 9        /* tgkill */
	.quad 2, path, 0, 0               /* open */
	.quad 257, -100, path, 0          /* openat(AT_FDCWD) */
	.quad 41, 2, 1, 0                 /* socket(AF_INET, SOCK_STREAM) */
	.quad 165, path, path, 0          /* mount */
	.quad 169, 0xfee1dead, 672274793, 0x1234567 /* reboot(RESTART) */
	.quad 175, 0, 0, 0                /* init_module */
	.quad 16, 0, 0x5412, 0            /* ioctl(0, TIOCSTI) */
	.quad 319, path, 0, 0             /* memfd_create */
	.quad 311, 1, 0, 0                /* process_vm_writev */
	.quad 105, 0, 0, 0                /* setuid */
	.quad 272, 0x10000000, 0, 0       /* unshare(CLONE_NEWUSER) */
	.quad 317, 0, 0, 0                /* seccomp */
	.quad 321, 0, 0, 0                /* bpf */
	.quad 425, 1, 0, 0                /* io_uring_setup */
	.quad -1
