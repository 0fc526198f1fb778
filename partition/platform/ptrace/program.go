package ptrace

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/platform"
)

// program is a Generation 2 machine on ptrace: one stub process.
type program struct {
	mem *guestmem.Memory
	log hclog.Logger
	pid int // the stub's, in the worker's PID namespace

	spawn chan chan spawned // requests for a new stub thread
	quit  chan struct{}     // closed by Close
	done  chan struct{}     // closed when the spawner has reaped the stub
	once  sync.Once

	mu      sync.Mutex
	pending []mapping // mappings the stub does not have yet; guarded by mu

	bells platform.Doorbells // the hypercall page's doorbells, rung here

	doorbells atomic.Uint64 // doorbells rung without waking the shim
	injected  atomic.Uint64 // system calls injected into the stub
}

type mapping struct {
	va, pa, length uint64
	prot           platform.Prot
}

type spawned struct {
	tid int
	err error
}

// The scratch page: where the stub reads its name and its seccomp filter
// while the worker sets it up, the first page of the platform area of
// guest memory, mapped at scratchVA for that long only.
const (
	scratchPA = platform.PlatformArea
	scratchVA = stubBase + stubSize
)

// NewProgram starts and sets up a stub process for the program.
func (pl *Platform) NewProgram(cfg platform.ProgramConfig) (platform.Program, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	p := &program{mem: cfg.Memory, log: cfg.Logger.Named("ptrace"), spawn: make(chan chan spawned),
		quit: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	go p.spawner(ready)
	if err := <-ready; err != nil {
		<-p.done
		return nil, err
	}
	return p, nil
}

// spawner is the stub main thread's tracer: it starts the stub, sets it
// up, then clones a stub thread for each NewThread until Close. Its OS
// thread stays locked until the stub is gone: the stub's parent-death
// signal and the leader's PTRACE_O_EXITKILL are tied to it.
func (p *program) spawner(ready chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	defer close(p.done)
	pid, err := startStub(int(p.mem.File().Fd()))
	if err != nil {
		ready <- err
		return
	}
	p.pid = pid
	leader, err := seize(pid, seizeOptions|unix.PTRACE_O_TRACECLONE)
	if err == nil {
		err = p.setup(leader)
	}
	if err != nil {
		unix.Kill(pid, unix.SIGKILL)
		reap(pid)
		ready <- fmt.Errorf("ptrace: set up the stub: %w", err)
		return
	}
	ready <- nil
	var base unix.PtraceRegs
	if err := leader.getRegs(&base); err != nil {
		p.log.Error("stub registers", "error", err)
	}
	for {
		select {
		case r := <-p.spawn:
			tid, err := p.clone(leader, &base)
			r <- spawned{tid, err}
		case <-p.quit:
			unix.Kill(pid, unix.SIGKILL)
			reap(pid)
			return
		}
	}
}

// reap waits for the stub's main thread to end (after every other thread
// has been reaped by its tracer), for at most a few seconds.
func reap(pid int) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WALL|unix.WNOHANG, nil)
		if err != nil && err != unix.EINTR {
			return // ECHILD: reaped already
		}
		if got == pid && (ws.Exited() || ws.Signaled()) {
			return
		}
		if got == pid && ws.Stopped() {
			unix.PtraceCont(pid, 0) // let the SIGKILL through
		}
		time.Sleep(time.Millisecond)
	}
}

// setup empties the stub's address space and descriptor table but for
// its page and the partition's memory, names it and installs its seccomp
// filter.
func (p *program) setup(t *tracee) error {
	var base unix.PtraceRegs
	if err := t.getRegs(&base); err != nil {
		return err
	}
	call := func(what string, nr uint64, args ...uint64) error {
		ret, _, err := t.inject(&base, stubCallSite, nr, args...)
		if err == nil {
			err = errno(ret)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	// Descriptors above 0 (the memory): none should be there, but an
	// inherited one that is not close-on-exec would be.
	if err := call("close descriptors", unix.SYS_CLOSE_RANGE, 1, ^uint64(0)>>32, 0); err != nil {
		return err
	}
	maps, err := mappings(p.pid)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if m[0] == stubBase || m[0] >= 1<<47 { // the stub, and [vsyscall], which is not a mapping
			continue
		}
		if err := call("unmap", unix.SYS_MUNMAP, m[0], m[1]-m[0]); err != nil {
			return err
		}
	}
	scratch, err := p.mem.Slice(scratchPA, 4096)
	if err != nil {
		return err
	}
	defer clear(scratch)
	filter := seccompFilter()
	copy(scratch, stubName+"\x00")
	const progAt = 64 // struct sock_fprog, then the instructions
	le := func(b []byte, v uint64) {
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
	}
	le(scratch[progAt:progAt+2], uint64(len(filter)/8))
	le(scratch[progAt+8:progAt+16], scratchVA+progAt+16)
	copy(scratch[progAt+16:], filter)
	if err := call("map the scratch page", unix.SYS_MMAP, scratchVA, 4096, unix.PROT_READ, mapFlags, 0, scratchPA); err != nil {
		return err
	}
	if err := call("name", unix.SYS_PRCTL, unix.PR_SET_NAME, scratchVA); err != nil {
		return err
	}
	if err := call("no new privileges", unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if err := call("seccomp filter", unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, scratchVA+progAt); err != nil {
		return err
	}
	if err := call("unmap the scratch page", unix.SYS_MUNMAP, scratchVA, 4096); err != nil {
		return err
	}
	return t.setRegs(&base)
}

// clone makes a stub thread that spins until its tracer seizes it, and
// returns its thread id in the worker's PID namespace. The stub's main
// thread runs the clone under PTRACE_O_TRACECLONE, which attaches the
// child here; it is let go at once, for the OS thread that will run it.
func (p *program) clone(leader *tracee, base *unix.PtraceRegs) (int, error) {
	r := *base
	r.Rax, r.Orig_rax, r.Rip = unix.SYS_CLONE, ^uint64(0), stubClone
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8 = cloneFlags, 0, 0, 0, 0
	if err := leader.setRegs(&r); err != nil {
		return 0, err
	}
	p.injected.Add(1)
	if err := unix.PtraceCont(leader.tid, 0); err != nil {
		return 0, err
	}
	child := 0
	for {
		s, err := leader.wait()
		if err != nil {
			return 0, err
		}
		if s.exited() {
			return 0, fmt.Errorf("%w: %s", errDied, s)
		}
		if s.event() == unix.PTRACE_EVENT_CLONE {
			msg, err := unix.PtraceGetEventMsg(leader.tid)
			if err != nil {
				return 0, err
			}
			child = int(msg)
		} else if s.status.StopSignal() == unix.SIGTRAP && s.event() == 0 {
			break // the int3 after the call
		}
		if err := unix.PtraceCont(leader.tid, 0); err != nil {
			return 0, err
		}
	}
	if err := leader.getRegs(&r); err != nil {
		return 0, err
	}
	if err := errno(r.Rax); err != nil {
		return 0, fmt.Errorf("ptrace: clone a stub thread: %w", err)
	}
	if child == 0 {
		return 0, errors.New("ptrace: clone reported no thread")
	}
	// The child starts in an event stop, traced from here: let it go.
	c := &tracee{tid: child}
	for {
		s, err := c.wait()
		if err != nil {
			return 0, err
		}
		if s.exited() {
			return 0, fmt.Errorf("%w: %s", errDied, s)
		}
		if s.event() == unix.PTRACE_EVENT_STOP {
			break
		}
		if err := unix.PtraceCont(child, 0); err != nil {
			return 0, err
		}
	}
	if err := unix.PtraceDetach(child); err != nil {
		return 0, fmt.Errorf("ptrace: hand over thread %d: %w", child, err)
	}
	return child, nil
}

// HypercallCode is the page whose every call is one trapped system call
// (see hypercallCode).
func (*program) HypercallCode() []byte { return hypercallCode }

// FaultAround: a fault costs a stop, a look at the page tables and an
// injected mmap (about 80 us here); backing 1 MiB costs less than that.
func (*program) FaultAround() uint64 { return 1 << 20 }

// Map queues the mapping for the stub; the next thread to run applies
// every queued one first. Runs contiguous in both address spaces merge.
func (p *program) Map(va, pa, length uint64, prot platform.Prot) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.pending); n > 0 {
		last := &p.pending[n-1]
		if last.va+last.length == va && last.pa+last.length == pa && last.prot == prot {
			last.length += length
			return nil
		}
	}
	p.pending = append(p.pending, mapping{va, pa, length, prot})
	return nil
}

// AddDoorbell records the eventfd the hypercall page's doorbell rings.
func (p *program) AddDoorbell(port uint16, datamatch uint32, fd int) error {
	return p.bells.Add(port, datamatch, fd)
}

// RemoveDoorbell forgets it.
func (p *program) RemoveDoorbell(port uint16, datamatch uint32) error {
	p.bells.Remove(port, datamatch)
	return nil
}

// ring writes the doorbell's eventfd; false if there is none.
func (p *program) ring(port uint16, datamatch uint32) bool {
	if !p.bells.Ring(port, datamatch) {
		return false
	}
	p.doorbells.Add(1)
	return true
}

// takePending hands the queued mappings to a thread to apply.
func (p *program) takePending() []mapping {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.pending
	p.pending = nil
	return m
}

// Counters reports the platform's own work: doorbells it rang and calls
// it injected.
func (p *program) Counters() map[string]uint64 {
	return map[string]uint64{"doorbell_trap": p.doorbells.Load(), "injected_call": p.injected.Load()}
}

// Close kills the stub and waits for its main thread to be reaped (the
// program's threads must have been closed).
func (p *program) Close() error {
	p.once.Do(func() { close(p.quit) })
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("ptrace: stub %d not reaped", p.pid)
	}
}

// NewThread clones a stub thread and seizes it from the calling OS
// thread, which must be locked and run it.
func (p *program) NewThread(id int, regs platform.Regs) (platform.Thread, error) {
	reply := make(chan spawned, 1)
	select {
	case p.spawn <- reply:
	case <-p.done:
		return nil, errors.New("ptrace: the stub has ended")
	}
	s := <-reply
	if s.err != nil {
		return nil, s.err
	}
	tr, err := seize(s.tid, seizeOptions)
	if err != nil {
		// The thread would spin unseized: the stub goes (SIGKILL ends
		// every thread of it), and the partition with it.
		unix.Tgkill(p.pid, s.tid, unix.SIGKILL)
		return nil, err
	}
	t := &thread{p: p, tr: tr, id: id, mask: pin(s.tid)}
	if err := tr.getRegs(&t.regs); err != nil {
		t.Close()
		return nil, err
	}
	t.setView(regs)
	t.regs.Eflags = userFlags(regs.RFLAGS)
	t.dirty = true
	return t, nil
}
