package ptrace

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/partition/platform"
)

// hypercallCode is the hypercall page on ptrace:
//
//	00  push r11              ; the system call clobbers it
//	02  mov  rax, rcx         ; the control word, as the call "number"
//	05  syscall               ; stopped by PTRACE_SYSEMU; its address says hypercall
//	07  pop  r11
//	09  ret
//
// A fast HvSignalEvent with flag 0 whose connection id has a doorbell is
// answered by the platform (the eventfd written, RAX 0); every other call
// is the shim's. RCX is clobbered, as Hyper-V's convention allows.
var hypercallCode = []byte{
	0x41, 0x53,
	0x48, 0x89, 0xC8,
	0x0F, 0x05,
	0x41, 0x5B,
	0xC3,
}

// hypercallReturn is where the page's system call stops (the address
// after it).
const hypercallReturn = platform.HypercallPage + 7

// User code selector of 64-bit processes (__USER_CS).
const userCS = 0x33

// thread is one program thread: a stub thread traced by the OS thread
// that runs it.
type thread struct {
	p  *program
	tr *tracee
	id int

	regs  unix.PtraceRegs // the tracee's registers as of the last stop, as the program sees them
	dirty bool            // regs must be written before the tracee runs
	after afterExit
	mask  *unix.CPUSet // the tracer's CPUs before it was pinned with its tracee
	dead  string       // why the stub thread is gone; "" while it lives (the tracer's)
	gone  atomic.Bool  // dead is set: Kick, from any goroutine, has nothing to signal
}

// afterExit is how the next Run goes back to the program.
type afterExit uint8

const (
	afterNothing afterExit = iota
	afterSyscall           // as sysret: at RCX with the flags in R11
)

// userFlags masks flags the program may not set on a return from the
// shim, as on KVM: no TF, DF, NT or AC, and no system flags.
func userFlags(f uint64) uint64 { return f&0x3C7FD7&^0x47700 | 0x202 }

func (t *thread) Kick() {
	if !t.gone.Load() {
		unix.Tgkill(t.p.pid, t.tr.tid, kickSignal)
	}
}

// Regs returns the program's registers as of the last exit.
func (t *thread) Regs() (platform.Regs, error) {
	r := &t.regs
	return platform.Regs{RAX: r.Rax, RBX: r.Rbx, RCX: r.Rcx, RDX: r.Rdx, RSI: r.Rsi, RDI: r.Rdi, RSP: r.Rsp, RBP: r.Rbp,
		R8: r.R8, R9: r.R9, R10: r.R10, R11: r.R11, R12: r.R12, R13: r.R13, R14: r.R14, R15: r.R15,
		RIP: r.Rip, RFLAGS: r.Eflags, FSBase: r.Fs_base}, nil
}

// SetRegs replaces them for the next Run.
func (t *thread) SetRegs(v platform.Regs) error {
	t.setView(v)
	t.regs.Eflags = userFlags(v.RFLAGS)
	t.dirty = true
	return nil
}

func (t *thread) setView(v platform.Regs) {
	r := &t.regs
	r.Rax, r.Rbx, r.Rcx, r.Rdx, r.Rsi, r.Rdi, r.Rsp, r.Rbp = v.RAX, v.RBX, v.RCX, v.RDX, v.RSI, v.RDI, v.RSP, v.RBP
	r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15 = v.R8, v.R9, v.R10, v.R11, v.R12, v.R13, v.R14, v.R15
	r.Rip, r.Fs_base = v.RIP, v.FSBase
	r.Orig_rax = ^uint64(0) // not in a system call: no restart
}

// SetReturn sets RAX for the return from a system call or hypercall.
func (t *thread) SetReturn(rax uint64) {
	t.regs.Rax = rax
	t.regs.Orig_rax = ^uint64(0) // no restart of a call the kernel never ran
	t.dirty = true
}

// TSC samples the host's counter, which the program reads natively.
func (t *thread) TSC() (uint64, uint64, error) {
	khz := tscKHz()
	if khz == 0 {
		return 0, 0, errors.New("ptrace: the time-stamp counter does not count")
	}
	return rdtsc(), khz, nil
}

// Run applies queued mappings, goes back to the program and runs it until
// the next exit the shim must see.
func (t *thread) Run() (platform.Exit, error) {
	if t.dead != "" {
		return platform.Exit{Kind: platform.ExitFailed, Message: t.dead}, nil
	}
	kicked, err := t.applyMappings()
	if err != nil {
		return t.failed(err), nil
	}
	if t.after == afterSyscall {
		t.regs.Rip = t.regs.Rcx
		t.regs.Eflags = userFlags(t.regs.R11)
		t.regs.Orig_rax = ^uint64(0)
		t.after, t.dirty = afterNothing, true
	}
	if t.dirty {
		if err := t.tr.setRegs(&t.regs); err != nil {
			return t.failed(err), nil
		}
		t.dirty = false
	}
	if kicked {
		return platform.Exit{Kind: platform.ExitKicked}, nil
	}
	for {
		if err := t.tr.resume(0); err != nil {
			return t.failed(err), nil
		}
		s, err := t.tr.wait()
		if err != nil {
			return t.failed(err), nil
		}
		if s.exited() {
			return t.failed(fmt.Errorf("the stub %s", describeEnd(s))), nil
		}
		if err := t.tr.getRegs(&t.regs); err != nil {
			return t.failed(err), nil
		}
		var si siginfo
		if needsSiginfo(s) {
			if si, err = t.tr.getSiginfo(); err != nil {
				return t.failed(err), nil
			}
		}
		d := decode(s, &t.regs, si)
		switch {
		case d.resume:
			continue
		case d.doorbell && t.p.ring(platform.DoorbellPort, uint32(d.exit.Input)):
			t.regs.Rax = 0 // HV_STATUS_SUCCESS
			if err := t.tr.setRegs(&t.regs); err != nil {
				return t.failed(err), nil
			}
			continue
		}
		t.after = d.after
		return d.exit, nil
	}
}

// failed marks the thread gone when the stub is, and says why.
func (t *thread) failed(err error) platform.Exit {
	if t.dead == "" && (errors.Is(err, errDied) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ECHILD)) {
		t.setDead(err.Error())
	}
	return platform.Exit{Kind: platform.ExitFailed, Message: err.Error()}
}

// describeEnd says how a stub thread ended; a kill by the seccomp filter
// is named as such.
func describeEnd(s stop) string {
	if s.status.Signaled() && s.status.Signal() == unix.SIGSYS {
		return "was killed by its seccomp filter (a system call it may not make)"
	}
	return s.String()
}

// applyMappings maps the queued program pages into the stub through this
// thread, populated at once: the shim queues what a fault backs (its
// fault-around block), which the program is about to touch, and the
// kernel fills a populated range far faster than it serves one fault per
// page (this host's shared memory has no huge pages; a program's own heap
// natively does). It reports a kick that arrived meanwhile.
func (t *thread) applyMappings() (kicked bool, err error) {
	maps := t.p.takePending()
	for i, m := range maps {
		ret, k, err := t.tr.inject(&t.regs, stubCallSite, unix.SYS_MMAP, m.va, m.length, uint64(m.prot), mapFlags|unix.MAP_POPULATE, 0, m.pa)
		t.p.injected.Add(1)
		t.dirty = true
		kicked = kicked || k
		if err == nil {
			err = errno(ret)
		}
		if err != nil {
			t.p.requeue(maps[i+1:])
			return kicked, fmt.Errorf("map the program's pages %#x-%#x: %w", m.va, m.va+m.length, err)
		}
	}
	return kicked, nil
}

// Close makes the stub thread exit and reaps it. A thread that cannot be
// made to exit takes the stub with it (SIGKILL ends every thread), so
// that nothing of the program runs on unwatched.
func (t *thread) Close() error {
	if t.dead == "" {
		r := t.regs
		r.Rax, r.Orig_rax, r.Rip, r.Rdi = unix.SYS_EXIT, ^uint64(0), stubCallSite, 0
		r.Rsp, r.Eflags = 0, userFlags(0)
		err := t.tr.setRegs(&r)
		if err == nil {
			err = unix.PtraceCont(t.tr.tid, 0)
		}
		if err != nil {
			t.p.log.Error("a stub thread would not exit: killing the stub", "tid", t.tr.tid, "error", err)
			unix.Tgkill(t.p.pid, t.tr.tid, unix.SIGKILL)
		}
		t.setDead("closed")
	}
	t.reap()
	unpin(t.mask)
	return nil
}

func (t *thread) setDead(why string) {
	t.dead = why
	t.gone.Store(true)
}

// reap waits for the stub thread's end, letting signals go by.
func (t *thread) reap() {
	for {
		s, err := t.tr.wait()
		if err != nil || s.exited() {
			return
		}
		if unix.PtraceCont(t.tr.tid, 0) != nil {
			return
		}
	}
}

// requeue puts back mappings a failed thread did not apply.
func (p *program) requeue(m []mapping) {
	if len(m) == 0 {
		return
	}
	p.mu.Lock()
	p.pending = append(m, p.pending...)
	p.mu.Unlock()
}

// decoded is what one stop means.
type decoded struct {
	exit     platform.Exit
	after    afterExit
	resume   bool // nothing for the shim: run on
	doorbell bool // a fast HvSignalEvent: ring its doorbell if it has one
}

// needsSiginfo reports whether decoding the stop needs its siginfo.
func needsSiginfo(s stop) bool {
	if !s.status.Stopped() || s.event() != 0 {
		return false
	}
	switch s.status.StopSignal() {
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP:
		return true
	}
	return false
}

// decode turns a tracee's stop (with its registers and, for a fault,
// its siginfo) into the platform's exit, changing the registers into the
// program's view where the stop differs from it. Everything here comes
// from a hostile program: it must hold for any input.
func decode(s stop, r *unix.PtraceRegs, si siginfo) decoded {
	if !s.status.Stopped() {
		return decoded{exit: platform.Exit{Kind: platform.ExitFailed, Message: "the stub " + s.String()}}
	}
	if s.event() != 0 {
		// A group stop or a late interrupt: nothing the program did.
		return decoded{resume: true}
	}
	sig := s.status.StopSignal()
	switch sig {
	case syscallStop:
		return decodeSyscall(r)
	case kickSignal:
		return decoded{exit: platform.Exit{Kind: platform.ExitKicked}}
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP:
		return decoded{exit: decodeFault(sig, r, si)}
	}
	return decoded{exit: platform.Exit{Kind: platform.ExitFailed, Message: fmt.Sprintf("the stub thread got %v", sig)}}
}

// decodeSyscall reads a system-call stop: the hypercall page's, the
// program's own, or a 32-bit call (int 0x80, or any call from 32-bit
// code), which the program may not make: it is the #GP an int 0x80
// takes on KVM.
func decodeSyscall(r *unix.PtraceRegs) decoded {
	nr := r.Orig_rax
	if r.Rip == hypercallReturn && r.Cs == userCS {
		e := platform.Exit{Kind: platform.ExitHypercall, Control: nr, Input: r.Rdx, Output: r.R8}
		r.Rax = nr
		return decoded{exit: e, doorbell: nr == 0x1005D && r.Rdx>>32 == 0}
	}
	if r.Cs != userCS || r.Rcx != r.Rip || r.R11 != r.Eflags {
		// The syscall instruction sets RCX and R11; int 0x80 leaves
		// them. The view puts RIP back on the 2-byte instruction.
		r.Rip -= 2
		return decoded{exit: platform.Exit{Kind: platform.ExitException, Vector: 13, ErrorCode: 0x80<<3 | 2, HasErrorCode: true}}
	}
	r.Rax = nr
	return decoded{after: afterSyscall, exit: platform.Exit{Kind: platform.ExitSyscall, Nr: nr,
		Args: [6]uint64{r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9}}}
}

// Signal codes (si_code) the decoding looks at.
const (
	siKernel   = 0x80
	segvMapErr = 1
	segvAccErr = 2
	segvPkuErr = 4
	busAdrAln  = 1
	fpeIntDiv  = 1
	fpeIntOvf  = 2
	trapBrkpt  = 1
	trapTrace  = 2
)

// decodeFault maps a fault signal back to the exception that raised it,
// as far as the kernel tells: a page fault's access type is not in
// siginfo, so an access at RIP counts as a fetch and the write bit stays
// clear (the shim maps a page with its range's whole protection and
// treats a fault that repeats at one address as the program's).
func decodeFault(sig unix.Signal, r *unix.PtraceRegs, si siginfo) platform.Exit {
	e := platform.Exit{Kind: platform.ExitException}
	switch sig {
	case unix.SIGSEGV:
		switch si.code {
		case segvMapErr, segvAccErr, segvPkuErr:
			e.Vector, e.Addr, e.HasErrorCode = 14, si.addr, true
			e.ErrorCode = platform.PFUser
			if si.code != segvMapErr {
				e.ErrorCode |= platform.PFPresent
			}
			if si.addr == r.Rip {
				e.ErrorCode |= platform.PFFetch
			}
		default: // SI_KERNEL: a #GP (a privileged instruction, a non-canonical address)
			e.Vector, e.HasErrorCode = 13, true
		}
	case unix.SIGBUS:
		if si.code == busAdrAln {
			e.Vector, e.HasErrorCode = 17, true
		} else {
			e.Vector, e.HasErrorCode = 12, true // #SS: a stack access off the canonical range
		}
	case unix.SIGILL:
		e.Vector = 6
	case unix.SIGFPE:
		switch si.code {
		case fpeIntDiv:
			e.Vector = 0
		case fpeIntOvf:
			e.Vector = 4
		default:
			e.Vector = 19 // a floating-point exception (the program's are SSE)
		}
	case unix.SIGTRAP:
		if si.code == trapTrace {
			e.Vector = 1 // single step: the program set TF
		} else {
			e.Vector = 3 // int3
		}
	}
	return e
}
