package ptrace

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// siginfo is what the kernel says of the signal a tracee stopped for.
type siginfo struct {
	signo, code int32
	addr        uint64 // the fault address of SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP
}

// getSiginfo reads the tracee's pending signal's siginfo
// (PTRACE_GETSIGINFO).
func (t *tracee) getSiginfo() (siginfo, error) {
	var raw [128]byte
	// SAFETY: raw is a live 128-byte array, the size of siginfo_t; the
	// kernel writes it during the call only.
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGINFO, uintptr(t.tid), 0, uintptr(unsafe.Pointer(&raw[0])), 0, 0)
	if errno != 0 {
		return siginfo{}, fmt.Errorf("ptrace: siginfo of %d: %w", t.tid, errno)
	}
	return parseSiginfo(raw[:]), nil
}

// parseSiginfo reads siginfo_t's fields the platform uses (x86-64
// layout: si_signo, si_errno, si_code, padding, then the union whose
// first member for faults is si_addr).
func parseSiginfo(b []byte) siginfo {
	le := binary.LittleEndian
	return siginfo{signo: int32(le.Uint32(b)), code: int32(le.Uint32(b[8:])), addr: le.Uint64(b[16:])}
}

// rawPtraceRegs is PTRACE_GETREGS or PTRACE_SETREGS without the
// runtime's system-call bookkeeping: neither blocks, and a trapped call
// makes one of each.
//
// SAFETY: r is a live struct user_regs_struct (unix.PtraceRegs mirrors
// it); the kernel reads or writes it during the call only.
func rawPtraceRegs(req int, tid int, r *unix.PtraceRegs) unix.Errno {
	_, _, errno := unix.RawSyscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), 0, uintptr(unsafe.Pointer(r)), 0, 0)
	return errno
}
