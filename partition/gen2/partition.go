package gen2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/accel"
	"github.com/partita-hv/partita/partition/elf"
	"github.com/partita-hv/partita/partition/platform"
)

// Config describes a Generation 2 partition.
type Config struct {
	Name    string
	Program string   // static x86-64 executable
	Args    []string // argv[1:]
	Env     []string
	Memory  uint64 // bytes, whole 2 MiB pages, 4 MiB to 64 GiB
	// Processors is how many processors the program is told it has
	// (sched_getaffinity, so Go's default GOMAXPROCS): 1 to 64, 0 meaning
	// 1. Each of its threads is a vCPU whatever the number.
	Processors int
	Console    io.Writer // what the program writes to fds 1 and 2
	ConsoleIn  io.Reader // what it reads from fd 0 (nil: end of input at once)
	Bus        Bus       // where its hypercalls' messages and events go (nil: none answers, unless VMBus is set)
	// VMBus, if set, is the guest end of the root's VMBus transport
	// socket (package vmbus/xproc): the partition's messages, doorbells
	// and channel interrupts go to and from the root's VMBus host. The
	// caller keeps the file.
	VMBus  *os.File
	Logger hclog.Logger

	// GuestMemory, if set, is the partition's memory (the root's memfd);
	// its size must be Memory. New takes ownership whatever the outcome.
	GuestMemory *guestmem.Memory

	// Platform runs the program's threads; nil: the one accel.Auto
	// chooses, which the partition closes with itself.
	Platform platform.Platform
}

// Exit says how the partition ended.
type Exit struct {
	Code    int    // exit_group's status, when Clean
	Clean   bool   // the program exited
	Message string // one line
	Report  string // a fault's registers and recent system calls
}

// Partition is a running Generation 2 partition: one vCPU per thread of its
// program.
type Partition struct {
	cfg     Config
	log     hclog.Logger
	ownPL   platform.Platform // opened by New, closed with the partition
	machine platform.Program
	// platformName names the platform the machine runs on.
	platformName string
	mem          *guestmem.Memory

	as            *addressSpace
	brkStart, brk uint64 // the program break
	entry, rsp    uint64 // where the program starts

	history [16]uint64 // recent system call numbers, a ring
	nhist   int

	enosys sync.Map // syscall number -> *atomic.Uint64
	calls  atomic.Uint64
	// byNumber counts system calls by number, those at or above
	// maxCountedSyscall together in the last.
	byNumber [maxCountedSyscall + 1]atomic.Uint64
	faults   atomic.Uint64 // page faults served (first touches)

	mu         sync.Mutex // guards as, brk, threads, nextTid, futexes, files, history
	threads    map[int]*thread
	nextTid    int
	futexes    map[uint64][]chan struct{} // waiters by physical address
	files      map[int64]*file            // eventfds and epolls, from descriptor 3
	fileChange chan struct{}              // closed (and replaced) when an eventfd is written
	threadsWG  sync.WaitGroup
	// gate is the pause gate and the end: a thread is inside it only
	// while it runs program code.
	gate    *platform.Gate
	end     <-chan struct{} // gate.Stopped()
	endOnce sync.Once
	exit    Exit

	input       []byte        // console input not yet read; guarded by mu
	inputEOF    bool          // ConsoleIn ended; guarded by mu
	inputChange chan struct{} // closed (and replaced) when input arrives or ends; guarded by mu

	synicQueue   [synicSlots][]synicMessage // messages waiting for their slot; guarded by mu
	synicChange  chan struct{}              // closed (and replaced) on a delivery; guarded by mu
	synicPending bool                       // a wake no wait has seen yet; guarded by mu
	synicRoom    chan struct{}              // closed (and replaced) when a queued message moves to its slot; guarded by mu
	physAllocs   map[uint64]uint64          // HvCallPartitaAllocPages ranges: GPA -> pages; guarded by mu

	bus           Bus       // cfg.Bus, or the relay to the root's VMBus host
	relay         *busRelay // nil without cfg.VMBus
	hypercalls    atomic.Uint64
	doorbellExits atomic.Uint64 // doorbell writes no ioeventfd matched

	vdsoOnce sync.Once // the vDSO's clock parameters, set up with the first thread
}

// newPartition makes a partition's bookkeeping, before any memory or VM.
func newPartition(cfg Config) *Partition {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	gate := platform.NewGate()
	return &Partition{cfg: cfg, log: cfg.Logger.Named("gen2").With("partition", cfg.Name), mem: cfg.GuestMemory,
		threads: map[int]*thread{}, futexes: map[uint64][]chan struct{}{}, gate: gate, end: gate.Stopped(),
		files: map[int64]*file{}, fileChange: make(chan struct{}),
		inputChange: make(chan struct{}), synicChange: make(chan struct{}), synicRoom: make(chan struct{}),
		physAllocs: map[uint64]uint64{}, bus: cfg.Bus, inputEOF: cfg.ConsoleIn == nil}
}

// maxProcessors is the most processors a program can be told of: one
// 64-bit affinity mask.
const maxProcessors = 64

// stackSize is the program's main stack, below userTop.
const stackSize = 8 << 20

// New loads the program into fresh guest memory and prepares its vCPU.
func New(cfg Config) (*Partition, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.GuestMemory != nil && cfg.GuestMemory.Size() != cfg.Memory {
		cfg.GuestMemory.Close()
		return nil, fmt.Errorf("gen2: guest memory holds %d bytes, the partition %d", cfg.GuestMemory.Size(), cfg.Memory)
	}
	if cfg.Processors == 0 {
		cfg.Processors = 1
	}
	if cfg.Processors < 1 || cfg.Processors > maxProcessors {
		if cfg.GuestMemory != nil {
			cfg.GuestMemory.Close()
		}
		return nil, fmt.Errorf("gen2: %d processors: want 1 to %d", cfg.Processors, maxProcessors)
	}
	img, err := os.ReadFile(cfg.Program)
	if err != nil {
		if cfg.GuestMemory != nil {
			cfg.GuestMemory.Close()
		}
		return nil, fmt.Errorf("gen2: program: %w", err)
	}
	if err := checkMemory(cfg.Memory); err != nil {
		if cfg.GuestMemory != nil {
			cfg.GuestMemory.Close()
		}
		return nil, err
	}
	p := newPartition(cfg)
	x, err := elf.Parse(img, userFloor, mmapBase)
	if err != nil {
		p.Close()
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			p.Close()
		}
	}()
	if p.mem == nil {
		if p.mem, err = guestmem.New(cfg.Name, cfg.Memory); err != nil {
			return nil, err
		}
	}
	mem := p.mem.Bytes()
	buildPageTableRoot(mem)
	pl := cfg.Platform
	if pl == nil {
		if pl, err = accel.Open(accel.Auto, 2); err != nil {
			return nil, err
		}
		p.ownPL = pl
	}
	p.platformName = pl.Name()
	if p.machine, err = pl.NewProgram(platform.ProgramConfig{Name: cfg.Name, Memory: p.mem, Logger: p.log}); err != nil {
		return nil, fmt.Errorf("gen2: %s: %w", pl.Name(), err)
	}
	if p.as, err = newAddressSpace(mem, p.machine); err != nil {
		return nil, err
	}
	var top uint64
	for _, s := range x.Segments {
		prot := uint32(0)
		if s.Flags&4 != 0 {
			prot |= protRead
		}
		if s.Flags&2 != 0 {
			prot |= protWrite
		}
		if s.Flags&1 != 0 {
			prot |= protExec
		}
		start, end := s.Vaddr&^0xFFF, (s.Vaddr+s.Memsz+0xFFF)&^0xFFF
		if v := p.as.find(start); v != nil {
			// Two segments share a page: it gets both protections.
			prot |= v.prot
			start = v.start
		}
		p.as.add(start, end, prot)
		if err := p.as.load(s.Vaddr, img[s.Offset:s.Offset+s.Filesz]); err != nil {
			return nil, err
		}
		top = max(top, end)
	}
	p.brkStart = top
	p.brk = p.brkStart
	p.as.add(userTop-stackSize, userTop, protRead|protWrite)
	// The hypercall page (its code is the platform's) and the SynIC
	// pages, backed now.
	p.as.add(HypercallPage, HypercallPage+4096, protRead|protExec)
	p.as.add(SynicMessagePage, SynicEventPage+4096, protRead|protWrite)
	if err := p.as.load(HypercallPage, p.machine.HypercallCode()); err != nil {
		return nil, err
	}
	for _, pg := range []uint64{SynicMessagePage, SynicEventPage} {
		if err := p.as.load(pg, make([]byte, 4096)); err != nil {
			return nil, err
		}
	}
	p.as.add(VDSOPage, VDSOPage+4096, protRead|protExec)
	if err := p.as.load(VDSOPage, vdsoImage()); err != nil {
		return nil, err
	}
	rsp, err := p.buildStack(x)
	if err != nil {
		return nil, err
	}
	if cfg.VMBus != nil {
		siefp, ok := p.as.translate(SynicEventPage, true)
		if !ok {
			return nil, errors.New("gen2: the SynIC event-flags page is not mapped")
		}
		if p.relay, err = newBusRelay(p, cfg.VMBus, siefp); err != nil {
			return nil, err
		}
		if p.bus == nil {
			p.bus = p.relay
		}
	}
	p.entry, p.rsp = x.Entry, rsp
	ok = true
	return p, nil
}

// buildStack lays out argc, argv, envp and the auxiliary vector at the
// top of memory, as Linux does, and returns the initial stack pointer.
func (p *Partition) buildStack(x *elf.Executable) (uint64, error) {
	sp := uint64(userTop)
	var err error
	push := func(b []byte) uint64 {
		sp -= uint64(len(b))
		if !p.as.copyOut(sp, b) {
			err = errors.New("gen2: initial stack out of room")
		}
		return sp
	}
	str := func(s string) uint64 { return push(append([]byte(s), 0)) }
	argv := append([]string{p.cfg.Name}, p.cfg.Args...)
	var argvp, envp []uint64
	size := 0
	for _, s := range append(argv, p.cfg.Env...) {
		size += len(s) + 1
	}
	if size > 64<<10 {
		return 0, fmt.Errorf("gen2: arguments and environment take %d bytes, at most 64 KiB", size)
	}
	for _, a := range argv {
		argvp = append(argvp, str(a))
	}
	for _, e := range p.cfg.Env {
		envp = append(envp, str(e))
	}
	random := push(randomBytes(16))
	sp &^= 15
	const (
		atNull   = 0
		atPhdr   = 3
		atPhent  = 4
		atPhnum  = 5
		atPagesz = 6
		atEntry  = 9
		atUID    = 11
		atRandom = 25
		atVDSO   = 33 // AT_SYSINFO_EHDR
	)
	auxv := []uint64{atPhdr, x.PhdrAddr, atPhent, uint64(x.Phentsz), atPhnum, uint64(x.Phnum), atPagesz, 4096,
		atEntry, x.Entry, atUID, 0, atRandom, random, atVDSO, VDSOPage, atNull, 0}
	words := []uint64{uint64(len(argvp))}
	words = append(words, argvp...)
	words = append(words, 0)
	words = append(words, envp...)
	words = append(words, 0)
	words = append(words, auxv...)
	if len(words)%2 == 1 {
		sp -= 8 // keep the stack 16-byte aligned at argc
	}
	b := make([]byte, 8*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint64(b[8*i:], w)
	}
	sp -= uint64(len(b))
	if !p.as.copyOut(sp, b) {
		err = errors.New("gen2: initial stack out of room")
	}
	return sp, err
}

// thread is one of the program's threads, run by one processor of the
// platform on one locked OS thread.
type thread struct {
	tid   int
	th    platform.Thread // nil until its OS thread made it
	start platform.Regs   // registers it starts with
	ctid  uint64          // CLONE_CHILD_CLEARTID: cleared and woken at exit

	lastFault uint64 // address of the last protection fault retried
}

// maxThreads bounds the program's threads at a time, maxThreadIDs over
// the partition's life (platform.MaxThreads, platform.MaxThreadIDs).
const (
	maxThreads   = platform.MaxThreads
	maxThreadIDs = platform.MaxThreadIDs
)

// Run runs the program until it exits, faults or is stopped, one vCPU
// per thread.
func (p *Partition) Run() Exit {
	p.mu.Lock()
	t, err := p.newThread(platform.Regs{RIP: p.entry, RSP: p.rsp, RFLAGS: 0x2})
	p.mu.Unlock()
	if err != nil {
		return Exit{Message: err.Error()}
	}
	if p.cfg.ConsoleIn != nil {
		go p.pumpInput(p.cfg.ConsoleIn)
	}
	p.startThread(t)
	<-p.end
	p.threadsWG.Wait()
	return p.exit
}

// maxInput is the console input the worker holds for the program; the
// pump stops reading while it is full.
const maxInput = 64 << 10

// pumpInput moves console input to the program's fd 0 until the reader
// ends or the partition does (a pump blocked in Read stays until the
// reader yields; the worker process ends then).
func (p *Partition) pumpInput(r io.Reader) {
	buf := make([]byte, 4096)
	for !p.ended() {
		p.mu.Lock()
		for len(p.input) >= maxInput && !p.ended() {
			change := p.inputChange
			p.mu.Unlock()
			select {
			case <-change:
			case <-p.end:
			}
			p.mu.Lock()
		}
		p.mu.Unlock()
		n, err := r.Read(buf)
		p.mu.Lock()
		p.input = append(p.input, buf[:n]...)
		if err != nil {
			p.inputEOF = true
		}
		close(p.inputChange)
		p.inputChange = make(chan struct{})
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// readInput serves read(0): it waits (p.mu released) for input, and
// returns 0 at its end.
func (p *Partition) readInput(buf, n uint64) int64 {
	for len(p.input) == 0 {
		if p.inputEOF {
			return 0
		}
		change := p.inputChange
		p.mu.Unlock()
		select {
		case <-change:
			p.mu.Lock()
		case <-p.end:
			p.mu.Lock()
			return -eINTR
		}
	}
	k := min(n, uint64(len(p.input)), maxIO)
	if !p.as.copyOut(buf, p.input[:k]) {
		return -eFAULT
	}
	p.input = p.input[k:]
	close(p.inputChange) // room for the pump
	p.inputChange = make(chan struct{})
	return int64(k)
}

// newThread makes a thread record; the caller holds p.mu.
func (p *Partition) newThread(start platform.Regs) (*thread, error) {
	if len(p.threads) >= maxThreads {
		return nil, fmt.Errorf("gen2: at most %d threads", maxThreads)
	}
	if p.nextTid >= maxThreadIDs {
		// A vCPU lives as long as its VM: thread ids are never reused.
		return nil, fmt.Errorf("gen2: at most %d threads in a partition's life", maxThreadIDs)
	}
	p.nextTid++
	t := &thread{tid: p.nextTid, start: start}
	p.threads[t.tid] = t
	return t, nil
}

// startThread runs t on a new locked OS thread.
func (p *Partition) startThread(t *thread) {
	p.threadsWG.Add(1)
	go func() {
		defer p.threadsWG.Done()
		if exit, ok := p.runThread(t); ok {
			p.finish(exit)
		}
	}()
}

// finish ends the partition with exit (the first end wins) and kicks
// every thread out of the program.
func (p *Partition) finish(exit Exit) {
	p.endOnce.Do(func() {
		p.exit = exit
		p.gate.Stop()
	})
}

// Pause stops every thread from running the program's code: it returns
// once none is inside it (threads waiting in a system call stay there
// and park when they would go back).
func (p *Partition) Pause() { p.gate.Pause() }

// Resume lets the threads run the program again.
func (p *Partition) Resume() { p.gate.Resume() }

// Paused reports whether the partition is paused.
func (p *Partition) Paused() bool { return p.gate.Paused() }

// ended reports whether the partition is ending.
func (p *Partition) ended() bool { return p.gate.IsStopped() }

// runThread runs one thread until it exits (ok false) or ends the
// partition (ok true, with why).
func (p *Partition) runThread(t *thread) (Exit, bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vcpuThread()
	th, err := p.machine.NewThread(t.tid, t.start)
	if err != nil {
		return Exit{Message: fmt.Sprintf("create thread %d: %v", t.tid, err)}, true
	}
	defer th.Close()
	p.gate.Add(th)
	defer p.gate.Remove(th)
	var err2 error
	p.vdsoOnce.Do(func() { err2 = p.setVDSOParams(th) })
	if err2 != nil {
		return Exit{Message: fmt.Sprintf("vDSO clock: %v", err2)}, true
	}
	p.mu.Lock()
	t.th = th
	p.mu.Unlock()
	for {
		if !p.gate.Enter() {
			return Exit{}, false
		}
		e, err := th.Run()
		p.gate.Leave()
		if err != nil {
			return Exit{Message: fmt.Sprintf("thread %d: %v", t.tid, err)}, true
		}
		if e.Kind != platform.ExitException || e.Vector != 14 {
			t.lastFault = 0 // progress: any other event clears the retry mark
		}
		if p.ended() {
			return Exit{}, false
		}
		exit, out := p.handle(th, t, e)
		switch out {
		case threadEnds:
			return Exit{}, false
		case partitionEnds:
			return exit, true
		}
	}
}

// handle answers one exit of thread t.
func (p *Partition) handle(th platform.Thread, t *thread, e platform.Exit) (Exit, outcome) {
	switch e.Kind {
	case platform.ExitSyscall:
		return p.syscall(th, t, e)
	case platform.ExitHypercall:
		th.SetReturn(p.hypercall(e.Control, e.Input, e.Output))
		return Exit{}, goOn
	case platform.ExitException:
		return p.trap(th, t, e)
	case platform.ExitKicked:
		return Exit{}, goOn
	case platform.ExitPortIO:
		// The only ports a program reaches are the hypercall page's; its
		// own accesses to them are its mistake.
		dir := "write"
		if e.In {
			dir = "read"
		}
		return p.fault(th, fmt.Sprintf("a %d-byte %s of port %#x outside the hypercall page", e.Size, dir, e.Port)), partitionEnds
	case platform.ExitShutdown:
		return p.fault(th, e.Message), partitionEnds
	case platform.ExitFailed:
		return p.fault(th, "the platform stopped the thread: "+e.Message), partitionEnds
	}
	return p.fault(th, fmt.Sprintf("unexpected exit %v", e.Kind)), partitionEnds
}

// What happens after an event.
type outcome int

const (
	goOn outcome = iota
	threadEnds
	partitionEnds
)

// setVDSOParams writes the vDSO's clock parameters, sampled on th, into
// its page (which the program cannot write).
func (p *Partition) setVDSOParams(th platform.Thread) error {
	b, err := vdsoParams(th)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pa, ok := p.as.translate(VDSOPage, false)
	if !ok {
		return errors.New("the vDSO page is not mapped")
	}
	copy(p.mem.Bytes()[pa+vdsoData:], b)
	return nil
}

// trap handles an exception taken from the program: a #PF on a page the
// program may use gets the page a frame; anything else ends the
// partition with a report.
func (p *Partition) trap(th platform.Thread, t *thread, e platform.Exit) (Exit, outcome) {
	if e.Vector == 14 && e.ErrorCode&platform.PFUser != 0 && (e.ErrorCode&platform.PFPresent == 0 || t.lastFault != e.Addr) {
		// Not present (a first touch), or a protection fault on a page
		// whose range allows the access now (mprotect widened it): back
		// or remap it and retry. A protection fault that repeats at the
		// same address is the program's.
		if e.ErrorCode&platform.PFPresent != 0 {
			t.lastFault = e.Addr
		}
		p.mu.Lock()
		err := p.as.back(e.Addr, e.ErrorCode&platform.PFWrite != 0, e.ErrorCode&platform.PFFetch != 0)
		p.mu.Unlock()
		switch {
		case err == nil:
			p.faults.Add(1)
			return Exit{}, goOn
		case errors.Is(err, errNoMemory):
			r, _ := th.Regs()
			return Exit{Message: fmt.Sprintf("program out of memory: the partition's %d MiB are used up (page fault at %#x, rip %#x, thread %d)",
				p.cfg.Memory>>20, e.Addr, r.RIP, t.tid), Report: p.report(r)}, partitionEnds
		}
	}
	r, _ := th.Regs()
	msg := fmt.Sprintf("%s at rip %#x (thread %d)", platform.VectorName(e.Vector), r.RIP, t.tid)
	switch e.Vector {
	case 14:
		msg += fmt.Sprintf(", address %#x, error %#x", e.Addr, e.ErrorCode)
	case 13:
		msg += fmt.Sprintf(", error %#x", e.ErrorCode)
	}
	return Exit{Message: "program fault: " + msg, Report: p.report(r)}, partitionEnds
}

// fault ends the partition on something the program should not do.
func (p *Partition) fault(th platform.Thread, what string) Exit {
	r, _ := th.Regs()
	return Exit{Message: "program fault: " + what, Report: p.report(r)}
}

// report describes the program's registers and its last system calls.
func (p *Partition) report(r platform.Regs) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "rip %#x rsp %#x rflags %#x\n", r.RIP, r.RSP, r.RFLAGS)
	fmt.Fprintf(&b, "rax %#x rbx %#x rcx %#x rdx %#x rsi %#x rdi %#x rbp %#x\n", r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RBP)
	fmt.Fprintf(&b, "r8 %#x r9 %#x r10 %#x r11 %#x r12 %#x r13 %#x r14 %#x r15 %#x\n", r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15)
	b.WriteString("last system calls:")
	n := min(p.nhist, len(p.history))
	for i := p.nhist - n; i < p.nhist; i++ {
		fmt.Fprintf(&b, " %d", p.history[i%len(p.history)])
	}
	return b.String()
}

// Stop makes Run return with reason (the first end wins).
func (p *Partition) Stop(reason string) { p.finish(Exit{Message: reason}) }

// Syscalls is how many system calls the program has made.
func (p *Partition) Syscalls() uint64 { return p.calls.Load() }

// Exits counts the program's exits to the worker, by reason: system
// calls, hypercalls the page could not complete, page faults served, and
// doorbells that matched no eventfd; and the platform's own counts (on
// ptrace: doorbells it rang itself, calls it injected into the stub).
// Doorbells KVM takes never reach the worker and are not counted here.
func (p *Partition) Exits() map[string]uint64 {
	m := map[string]uint64{
		"syscall":       p.calls.Load(),
		"hypercall":     p.hypercalls.Load(),
		"page_fault":    p.faults.Load(),
		"doorbell_miss": p.doorbellExits.Load(),
	}
	if c, ok := p.machine.(platform.Counters); ok {
		for k, v := range c.Counters() {
			m[k] = v
		}
	}
	return m
}

// Platform names the platform the program runs on.
func (p *Partition) Platform() string { return p.platformName }

// SyscallCounts returns how often each system call was made (numbers at
// or above 512 counted together as 512).
func (p *Partition) SyscallCounts() map[uint64]uint64 {
	m := map[uint64]uint64{}
	for nr := range p.byNumber {
		if n := p.byNumber[nr].Load(); n != 0 {
			m[uint64(nr)] = n
		}
	}
	return m
}

// ENOSYSCounts returns how often each unserved system call was made.
func (p *Partition) ENOSYSCounts() map[uint64]uint64 {
	m := map[uint64]uint64{}
	p.enosys.Range(func(k, v any) bool {
		m[k.(uint64)] = v.(*atomic.Uint64).Load()
		return true
	})
	return m
}

// Close ends the partition if it runs and releases the VMBus relay, the
// machine and the memory. Call it after Run has returned.
func (p *Partition) Close() error {
	p.finish(Exit{Message: "partition closed"})
	var errs []error
	if p.relay != nil {
		errs = append(errs, p.relay.close())
	}
	if p.machine != nil {
		errs = append(errs, p.machine.Close())
	}
	if p.ownPL != nil {
		errs = append(errs, p.ownPL.Close())
	}
	if p.mem != nil {
		errs = append(errs, p.mem.Close())
	}
	return errors.Join(errs...)
}
