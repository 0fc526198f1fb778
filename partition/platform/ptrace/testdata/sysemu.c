/*
 * The reference a ptrace platform is measured against: the least a tracer
 * can do per trapped system call. A child makes N getpid calls; the parent
 * traces it with PTRACE_SYSEMU and, for each call, waits for the stop,
 * reads the registers, writes the result and resumes it: stop, GETREGS,
 * SETREGS, resume. It prints the nanoseconds per call. With "pin" after
 * the count, both run on the CPU the loop starts on (a stop and a resume
 * then wake a thread on the same CPU).
 *
 *   cc -O2 -o sysemu sysemu.c && ./sysemu 100000 [pin]
 */
#define _GNU_SOURCE
#include <sched.h>
#include <string.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PTRACE_SYSEMU
#define PTRACE_SYSEMU 31
#endif

int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 100000;
	if (argc > 2 && strcmp(argv[2], "pin") == 0) {
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(sched_getcpu(), &one);
		sched_setaffinity(0, sizeof one, &one);
	}
	pid_t pid = fork();
	if (pid == 0) {
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		raise(SIGSTOP);
		for (long i = 0; i < n; i++)
			syscall(SYS_getpid);
		_exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL);
	struct timespec t0, t1;
	long calls = 0;
	ptrace(PTRACE_SYSEMU, pid, 0, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		waitpid(pid, &status, 0);
		if (!WIFSTOPPED(status))
			break;
		struct user_regs_struct r;
		ptrace(PTRACE_GETREGS, pid, 0, &r);
		if (r.orig_rax == SYS_getpid)
			calls++;
		r.rax = r.orig_rax == SYS_exit || r.orig_rax == SYS_exit_group ? 0 : 42;
		ptrace(PTRACE_SETREGS, pid, 0, &r);
		if (r.orig_rax == SYS_exit || r.orig_rax == SYS_exit_group) {
			ptrace(PTRACE_SYSCALL, pid, 0, 0); /* let the exit run */
			continue;
		}
		ptrace(PTRACE_SYSEMU, pid, 0, 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
	printf("%ld calls, %.0f ns/call\n", calls, ns / (calls ? calls : 1));
	return 0;
}
