package ptrace

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// tracee is one traced stub thread. Every method must run on the OS
// thread that seized it: ptrace requests come only from the tracer.
type tracee struct {
	tid int
}

// Options every tracee is seized with: a system-call stop is SIGTRAP|0x80,
// and the tracee dies with its tracer.
const seizeOptions = unix.PTRACE_O_TRACESYSGOOD | unix.PTRACE_O_EXITKILL

// syscallStop is the stop signal of a system-call stop (TRACESYSGOOD).
const syscallStop = unix.SIGTRAP | 0x80

// kickSignal is what Kick sends a running tracee.
const kickSignal = unix.SIGUSR1

// errDied: the stub thread is gone (the stub was killed or exited).
var errDied = errors.New("ptrace: the stub thread is gone")

// stop is one wait4 report about a tracee.
type stop struct {
	status unix.WaitStatus
}

func (s stop) exited() bool { return s.status.Exited() || s.status.Signaled() }

// event is the PTRACE_EVENT_* of an event stop, or 0.
func (s stop) event() int { return int(s.status) >> 16 }

func (s stop) String() string {
	switch {
	case s.status.Exited():
		return fmt.Sprintf("exited with status %d", s.status.ExitStatus())
	case s.status.Signaled():
		return fmt.Sprintf("killed by %v", s.status.Signal())
	case s.status.Stopped():
		return fmt.Sprintf("stopped by %v (event %d)", s.status.StopSignal(), s.event())
	}
	return fmt.Sprintf("status %#x", uint32(s.status))
}

// seize attaches to tid (which runs the stub's spin loop) and stops it.
func seize(tid int, options int) (*tracee, error) {
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(tid), 0, uintptr(options), 0, 0); errno != 0 {
		return nil, fmt.Errorf("ptrace: seize %d: %w", tid, errno)
	}
	t := &tracee{tid: tid}
	if err := unix.PtraceInterrupt(tid); err != nil {
		return nil, fmt.Errorf("ptrace: interrupt %d: %w", tid, err)
	}
	for {
		s, err := t.wait()
		if err != nil {
			return nil, err
		}
		if s.exited() {
			return nil, fmt.Errorf("%w: %s", errDied, s)
		}
		if s.event() == unix.PTRACE_EVENT_STOP {
			return t, nil
		}
		// A signal that raced the interrupt: drop it and wait again.
		if err := unix.PtraceCont(tid, 0); err != nil {
			return nil, err
		}
	}
}

// wait waits for the tracee's next stop or its end.
func (t *tracee) wait() (stop, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(t.tid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return stop{}, fmt.Errorf("ptrace: wait for %d: %w", t.tid, err)
		}
		return stop{ws}, nil
	}
}

func (t *tracee) getRegs(r *unix.PtraceRegs) error {
	if errno := rawPtraceRegs(unix.PTRACE_GETREGS, t.tid, r); errno != 0 {
		return fmt.Errorf("ptrace: get registers of %d: %w", t.tid, errno)
	}
	return nil
}

func (t *tracee) setRegs(r *unix.PtraceRegs) error {
	if errno := rawPtraceRegs(unix.PTRACE_SETREGS, t.tid, r); errno != 0 {
		return fmt.Errorf("ptrace: set registers of %d: %w", t.tid, errno)
	}
	return nil
}

// resume lets the tracee run until its next system call (which it does
// not run) or signal; sig is delivered (0: none).
func (t *tracee) resume(sig int) error {
	if _, _, errno := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_SYSEMU, uintptr(t.tid), 0, uintptr(sig), 0, 0); errno != 0 {
		return fmt.Errorf("ptrace: resume %d: %w", t.tid, errno)
	}
	return nil
}

// inject makes the tracee (in any ptrace stop) run one system call at the
// stub's site with the given registers as a base and returns the call's
// result. The caller restores the tracee's registers afterwards. A kick
// that arrives meanwhile is reported in kicked.
func (t *tracee) inject(base *unix.PtraceRegs, site uint64, nr uint64, args ...uint64) (ret uint64, kicked bool, err error) {
	r := *base
	// The call needs no stack, and a program's hostile stack pointer (a
	// non-canonical one) must not stop the return to the site.
	r.Rax, r.Orig_rax, r.Rip, r.Rsp = nr, ^uint64(0), site, 0
	dst := []*uint64{&r.Rdi, &r.Rsi, &r.Rdx, &r.R10, &r.R8, &r.R9}
	for i, a := range args {
		*dst[i] = a
	}
	if err := t.setRegs(&r); err != nil {
		return 0, false, err
	}
	if err := unix.PtraceCont(t.tid, 0); err != nil {
		return 0, false, fmt.Errorf("ptrace: run injected call on %d: %w", t.tid, err)
	}
	for {
		s, err := t.wait()
		if err != nil {
			return 0, kicked, err
		}
		switch {
		case s.exited():
			return 0, kicked, fmt.Errorf("%w: %s", errDied, s)
		case s.status.Stopped() && s.status.StopSignal() == unix.SIGTRAP && s.event() == 0:
			// The int3 after the call.
			if err := t.getRegs(&r); err != nil {
				return 0, kicked, err
			}
			return r.Rax, kicked, nil
		case s.status.Stopped() && s.status.StopSignal() == kickSignal:
			kicked = true
		case s.status.Stopped() && s.event() != 0:
			// An event stop (a clone's): the caller's business, but
			// here none is expected.
			return 0, kicked, fmt.Errorf("ptrace: unexpected event %d during an injected call", s.event())
		default:
			return 0, kicked, fmt.Errorf("ptrace: injected call %d on %d: %s", nr, t.tid, s)
		}
		if err := unix.PtraceCont(t.tid, 0); err != nil {
			return 0, kicked, err
		}
	}
}

// errno turns a raw system-call result into an error (nil for success).
func errno(ret uint64) error {
	if v := int64(ret); v < 0 && v > -4096 {
		return unix.Errno(-v)
	}
	return nil
}
