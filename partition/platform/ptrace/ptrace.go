// Package ptrace is the ptrace platform (package partition/platform): a
// Generation 2 program runs natively, as threads of a stub process the
// worker creates and traces with PTRACE_SYSEMU, so every system call stops
// before the kernel runs it and the worker's shim serves it, exactly as on
// KVM. It needs no hardware virtualization: only ptrace, which gVisor's
// ptrace platform uses the same way.
//
// # The stub
//
// The stub is a one-page static executable this package builds (stub.go),
// run from a memfd in fresh PID, mount, network, IPC and UTS namespaces
// (and a user namespace when the worker is not root). Its only descriptor
// is the partition's memory (descriptor 0). Once seized, the worker
// unmaps everything the kernel gave it (stack, vDSO) but its own page,
// names it, and installs a seccomp filter as a second wall: the only
// system calls it lets through are the few the worker injects (mmap,
// munmap, mprotect, madvise, exit and a thread clone), and only from the
// stub page's two system-call instructions. A program's own system calls
// never reach that filter: PTRACE_SYSEMU skips them before seccomp runs.
//
// The stub's main thread never runs program code: it is the spawner, whose
// tracer (one locked OS thread of the worker) clones a stub thread for
// each program thread and hands it over. Each program thread is then
// traced by the OS thread that runs it, as a KVM vCPU is run by one.
//
// # Address space
//
// The program's pages are the partition's memfd, mapped into the stub at
// the program's addresses by injected mmap calls: the shim keeps its page
// tables in guest memory on every platform, and Map mirrors what they map
// before the program runs again. Pages are backed on first touch as on
// KVM: a touch of an unmapped page is a SIGSEGV the platform reports as a
// page fault.
//
// # Traps
//
// A system call is a syscall-enter stop. The hypercall page is the
// platform's (hypercallCode): one system call instruction with the
// control word in RAX, which the platform recognises by its address and
// reports as a hypercall; a fast HvSignalEvent whose connection id has a
// doorbell is answered here by writing the doorbell's eventfd, without
// waking the shim. Faults arrive as signals (SIGSEGV, SIGILL, SIGFPE,
// SIGBUS, SIGTRAP) and are reported as the exceptions that caused them.
// Kick sends SIGUSR1, which the program cannot send or block (its signal
// calls are the shim's).
//
// No stub outlives its worker: every tracee is seized with
// PTRACE_O_EXITKILL, and the stub has the spawner thread's death as its
// parent-death signal from its first instruction.
package ptrace

import (
	"fmt"
	"sync"

	"github.com/partita-hv/partita/partition/platform"
)

// Platform is ptrace as a partition platform.
type Platform struct{}

var _ platform.Platform = (*Platform)(nil)

var (
	probeOnce sync.Once
	probeErr  error
)

// NewPlatform checks, once per process, that this host lets the worker
// start and trace a stub (a seccomp profile or a container can forbid
// ptrace); the error wraps platform.ErrUnavailable if not.
func NewPlatform() (*Platform, error) {
	probeOnce.Do(func() { probeErr = probe() })
	if probeErr != nil {
		return nil, fmt.Errorf("%w: %w", platform.ErrUnavailable, probeErr)
	}
	startCalibration()
	return &Platform{}, nil
}

// Name is "ptrace".
func (*Platform) Name() string { return "ptrace" }

// Close has nothing to release.
func (*Platform) Close() error { return nil }

// NewPC: a PC needs a CPU in real mode with firmware; ptrace runs only
// programs.
func (*Platform) NewPC(platform.PCConfig) (platform.PC, error) {
	return nil, fmt.Errorf("%w: ptrace runs Generation 2 programs only", platform.ErrUnsupported)
}
