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
	"github.com/partita-hv/partita/partition/elf"
	"github.com/partita-hv/partita/partition/kvm"
)

// Config describes a Generation 2 partition.
type Config struct {
	Name    string
	Program string   // static x86-64 executable
	Args    []string // argv[1:]
	Env     []string
	Memory  uint64 // bytes, whole 2 MiB pages, 4 MiB to 4 GiB
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
	cfg Config
	log hclog.Logger
	sys *kvm.System
	vm  *kvm.VM
	mem *guestmem.Memory

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
	end        chan struct{} // closed when the partition ends
	endOnce    sync.Once
	exit       Exit

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

	vdsoOnce sync.Once // the vDSO's clock parameters, set up with the first vCPU

	pauseMu   sync.Mutex
	pauseCond *sync.Cond
	paused    bool // guarded by pauseMu
	inGuest   int  // threads inside KVM_RUN; guarded by pauseMu
}

// newPartition makes a partition's bookkeeping, before any memory or VM.
func newPartition(cfg Config) *Partition {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	p := &Partition{cfg: cfg, log: cfg.Logger.Named("gen2").With("partition", cfg.Name), mem: cfg.GuestMemory,
		threads: map[int]*thread{}, futexes: map[uint64][]chan struct{}{}, end: make(chan struct{}),
		files: map[int64]*file{}, fileChange: make(chan struct{}),
		inputChange: make(chan struct{}), synicChange: make(chan struct{}), synicRoom: make(chan struct{}),
		physAllocs: map[uint64]uint64{}, bus: cfg.Bus, inputEOF: cfg.ConsoleIn == nil}
	p.pauseCond = sync.NewCond(&p.pauseMu)
	return p
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
	if cfg.Memory < 2*largePage || cfg.Memory%largePage != 0 || cfg.Memory > maxMemory {
		if cfg.GuestMemory != nil {
			cfg.GuestMemory.Close()
		}
		return nil, fmt.Errorf("gen2: memory %#x bytes: want 4 MiB to 4 GiB in whole 2 MiB pages", cfg.Memory)
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
	if err := buildKernelArea(mem); err != nil {
		return nil, err
	}
	if p.as, err = newAddressSpace(mem); err != nil {
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
	// The hypercall page (a port write that faults, then ret) and the
	// SynIC pages, backed now.
	p.as.add(HypercallPage, HypercallPage+4096, protRead|protExec)
	p.as.add(SynicMessagePage, SynicEventPage+4096, protRead|protWrite)
	if err := p.as.load(HypercallPage, hypercallCode); err != nil {
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
	if p.sys, err = kvm.Open(); err != nil {
		return nil, err
	}
	if p.vm, err = p.sys.CreateVM(); err != nil {
		return nil, err
	}
	if err := p.vm.SetMemory(0, 0, mem, 0); err != nil {
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

// thread is one of the program's threads, run by one vCPU on one locked
// OS thread.
type thread struct {
	tid    int
	slot   int // its TSS and exception stack
	vcpu   *kvm.VCPU
	start  kvm.Regs  // registers it starts with
	sregs  kvm.Sregs // its segments and control registers as the program sees them
	fsBase uint64
	ctid   uint64 // CLONE_CHILD_CLEARTID: cleared and woken at exit

	// userSegs says the vCPU holds the thread's user segments with FS
	// base liveFS: true after a return to the program, false once an
	// exception took it to the CPL0 stub. A return that finds them so
	// skips KVM_SET_SREGS.
	userSegs bool
	liveFS   uint64

	lastFault uint64 // address of the last protection fault retried
}

// maxThreads bounds the program's threads at a time (one TSS and
// exception stack each in the kernel area); maxThreadIDs bounds them over
// the partition's life (each was a vCPU, and KVM keeps a VM's vCPUs until
// the VM goes).
const (
	maxThreads   = 32
	maxThreadIDs = 1023
)

// Run runs the program until it exits, faults or is stopped, one vCPU
// per thread.
func (p *Partition) Run() Exit {
	p.mu.Lock()
	t, err := p.newThread(kvm.Regs{RIP: p.entry, RSP: p.rsp, RFLAGS: 0x2}, 0)
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
func (p *Partition) newThread(start kvm.Regs, fsBase uint64) (*thread, error) {
	used := map[int]bool{}
	for _, t := range p.threads {
		used[t.slot] = true
	}
	slot := -1
	for i := 0; i < maxThreads; i++ {
		if !used[i] {
			slot = i
			break
		}
	}
	if slot < 0 {
		return nil, fmt.Errorf("gen2: at most %d threads", maxThreads)
	}
	if p.nextTid >= maxThreadIDs {
		// A vCPU lives as long as its VM: thread ids are never reused.
		return nil, fmt.Errorf("gen2: at most %d threads in a partition's life", maxThreadIDs)
	}
	p.nextTid++
	t := &thread{tid: p.nextTid, slot: slot, start: start, fsBase: fsBase}
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
// every vCPU out of the guest.
func (p *Partition) finish(exit Exit) {
	p.endOnce.Do(func() {
		p.exit = exit
		close(p.end)
		p.pauseMu.Lock()
		p.pauseCond.Broadcast()
		p.pauseMu.Unlock()
		p.mu.Lock()
		for _, t := range p.threads {
			if t.vcpu != nil {
				t.vcpu.Kick()
			}
		}
		p.mu.Unlock()
	})
}

// enterGuest waits while the partition is paused, then counts the
// thread in the guest; false if the partition is ending.
func (p *Partition) enterGuest() bool {
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	for p.paused && !p.ended() {
		p.pauseCond.Wait()
	}
	if p.ended() {
		return false
	}
	p.inGuest++
	return true
}

func (p *Partition) leaveGuest() {
	p.pauseMu.Lock()
	p.inGuest--
	p.pauseCond.Broadcast()
	p.pauseMu.Unlock()
}

// Pause stops every thread from running the program's code: it returns
// once none is inside the guest (threads waiting in a system call stay
// there and park when they would go back).
func (p *Partition) Pause() {
	p.pauseMu.Lock()
	p.paused = true
	p.pauseMu.Unlock()
	p.mu.Lock()
	for _, t := range p.threads {
		if t.vcpu != nil {
			t.vcpu.Kick()
		}
	}
	p.mu.Unlock()
	p.pauseMu.Lock()
	for p.inGuest > 0 && !p.ended() {
		p.pauseCond.Wait()
	}
	p.pauseMu.Unlock()
}

// Resume lets the threads run the program again.
func (p *Partition) Resume() {
	p.pauseMu.Lock()
	p.paused = false
	p.pauseCond.Broadcast()
	p.pauseMu.Unlock()
}

// Paused reports whether the partition is paused.
func (p *Partition) Paused() bool {
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	return p.paused
}

// ended reports whether the partition is ending.
func (p *Partition) ended() bool {
	select {
	case <-p.end:
		return true
	default:
		return false
	}
}

// runThread runs one thread until it exits (ok false) or ends the
// partition (ok true, with why).
func (p *Partition) runThread(t *thread) (Exit, bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vcpuThread()
	v, err := p.vm.CreateVCPU(uint32(t.tid))
	if err != nil {
		return Exit{Message: fmt.Sprintf("create vCPU: %v", err)}, true
	}
	if err := p.setup(v, t); err != nil {
		return Exit{Message: fmt.Sprintf("set up the vCPU: %v", err)}, true
	}
	// Every system call reads and writes the registers: through kvm_run,
	// not ioctls, where KVM allows.
	v.EnableSyncRegs()
	p.mu.Lock()
	t.vcpu = v
	p.mu.Unlock()
	if p.ended() {
		return Exit{}, false
	}
	for {
		if !p.enterGuest() {
			return Exit{}, false
		}
		r, err := v.Run()
		p.leaveGuest()
		if r == kvm.ExitIO && v.IO().Port != trapPortBase+14 {
			t.lastFault = 0 // progress: any other event clears the retry mark
		}
		if err != nil {
			return Exit{Message: fmt.Sprintf("vCPU: %v", err)}, true
		}
		if p.ended() {
			return Exit{}, false
		}
		switch r {
		case kvm.ExitIO:
			io := v.IO()
			if io.Port == DoorbellPort && !io.In && io.Size == 4 && io.Count == 1 && len(io.Data) == 4 {
				if err := p.unmatchedDoorbell(v, binary.LittleEndian.Uint32(io.Data)); err != nil {
					return Exit{Message: fmt.Sprintf("resume the program: %v", err)}, true
				}
				continue
			}
			if (io.Port == syscallPort || io.Port == hypercallPort) && !io.In && io.Size == 1 && io.Count == 1 {
				exit, outcome := p.portCall(v, t, io.Port)
				switch outcome {
				case threadEnds:
					return Exit{}, false
				case partitionEnds:
					return exit, true
				}
				continue
			}
			if io.Port >= DoorbellPort && io.Port < DoorbellPort+4 {
				// The only ports the program may touch: anything but a
				// 32-bit write of a connection id is its mistake.
				return p.fault(v, fmt.Sprintf("a %d-byte %s of the doorbell port %#x", io.Size, map[bool]string{true: "read", false: "write"}[io.In], io.Port)), true
			}
			if io.In || io.Size != 1 || io.Count != 1 {
				return p.fault(v, fmt.Sprintf("port access %#x from guest kernel mode", io.Port)), true
			}
			switch {
			case io.Port >= trapPortBase && io.Port < trapPortBase+32:
				exit, outcome := p.trap(v, t, uint8(io.Port-trapPortBase))
				switch outcome {
				case threadEnds:
					return Exit{}, false
				case partitionEnds:
					return exit, true
				}
			case io.Port == trapPortOther:
				return p.fault(v, "an interrupt or exception beyond the first 32 vectors"), true
			default:
				return p.fault(v, fmt.Sprintf("write to port %#x", io.Port)), true
			}
		case kvm.ExitKicked, kvm.ExitIntr:
		case kvm.ExitShutdown:
			return p.fault(v, "triple fault"), true
		default:
			return p.fault(v, fmt.Sprintf("unexpected exit %v", r)), true
		}
	}
}

// What happens after an event.
type outcome int

const (
	goOn outcome = iota
	threadEnds
	partitionEnds
)

// setup puts a vCPU in long mode at CPL3 with t's registers.
func (p *Partition) setup(v *kvm.VCPU, t *thread) error {
	cpuid, err := p.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	for i := range cpuid {
		e := &cpuid[i]
		switch e.Function {
		case 1: // initial APIC id in EBX[31:24]
			e.EBX = e.EBX&0x00FFFFFF | uint32(t.tid)<<24
		case 0xB, 0x1F:
			e.EDX = uint32(t.tid)
		}
	}
	if err := v.SetCPUID(cpuid); err != nil {
		return err
	}
	s, err := v.Sregs()
	if err != nil {
		return err
	}
	code := kvm.Segment{Limit: 0xFFFFFFFF, Selector: selUserCode, Type: 0xB, Present: 1, DPL: 3, S: 1, L: 1, G: 1}
	data := kvm.Segment{Limit: 0xFFFFFFFF, Selector: selUserData, Type: 0x3, Present: 1, DPL: 3, S: 1, DB: 1, G: 1}
	s.CS, s.SS, s.DS, s.ES, s.FS, s.GS = code, data, data, data, data, data
	s.TR = kvm.Segment{Base: tssAddr + uint64(t.slot)*tssSize, Limit: tssLimit, Selector: selTSS, Type: 0xB, Present: 1}
	s.LDT = kvm.Segment{Unusable: 1}
	s.GDT = kvm.DTable{Base: gdtAddr, Limit: selTSS + 16 - 1}
	s.IDT = kvm.DTable{Base: idtAddr, Limit: 256*16 - 1}
	s.CR0 = 0x80010033 // PG, WP, NE, ET, MP, PE
	s.CR3 = pml4Addr
	s.CR4 = 0x620  // OSXMMEXCPT, OSFXSR, PAE
	s.EFER = 0xD01 // NXE, LMA, LME, SCE
	s.FS.Base = t.fsBase
	if err := v.SetSregs(s); err != nil {
		return err
	}
	t.sregs = s
	t.userSegs, t.liveFS = true, t.fsBase
	const (
		msrSTAR  = 0xC0000081
		msrLSTAR = 0xC0000082
		msrCSTAR = 0xC0000083
		msrFMASK = 0xC0000084
	)
	if err := v.SetMSRs([]kvm.MSR{
		{Index: msrSTAR, Data: uint64(selKernelCode)<<32 | uint64(selUser32Code)<<48},
		{Index: msrLSTAR, Data: stubAddr},
		{Index: msrCSTAR, Data: stubAddr}, // a compatibility-mode syscall lands there too
		{Index: msrFMASK, Data: 0x47700},  // TF, IF, DF, IOPL, NT, AC
	}); err != nil {
		return err
	}
	if err := v.SetFPU(kvm.FPU{FCW: 0x37F, MXCSR: 0x1F80}); err != nil {
		return err
	}
	var err2 error
	p.vdsoOnce.Do(func() { err2 = p.setVDSOParams(v) })
	if err2 != nil {
		return fmt.Errorf("vDSO clock: %w", err2)
	}
	r := t.start
	return v.SetRegs(r)
}

// setVDSOParams writes the vDSO's clock parameters, sampled on v, into
// its page (which the program cannot write).
func (p *Partition) setVDSOParams(v *kvm.VCPU) error {
	b, err := vdsoParams(v)
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

// returnToUser resumes the program after a system call: at the
// instruction after its syscall (RCX), with its flags (R11) and its
// segments, as sysret would.
func (p *Partition) returnToUser(v *kvm.VCPU, t *thread, r *kvm.Regs) error {
	if r.RCX >= 1<<47 {
		return fmt.Errorf("return address %#x is not a canonical user address", r.RCX)
	}
	r.RIP = r.RCX
	r.RFLAGS = r.R11 & 0x3C7FD7 // as SYSRET: no RF, VM or reserved bits
	return p.resume(v, t, r)
}

// resume runs the thread again at r.RIP with its registers and segments.
func (p *Partition) resume(v *kvm.VCPU, t *thread, r *kvm.Regs) error {
	r.RFLAGS = r.RFLAGS&^0x47700 | 0x2 // no TF, IF, DF, IOPL, NT, AC from the program
	if err := v.SetRegs(*r); err != nil {
		return err
	}
	if t.userSegs && t.liveFS == t.fsBase {
		return nil // a system call or hypercall left them as they were
	}
	// The thread's segments are the ones it started with, but for the
	// FS base: no need to read them back.
	s := t.sregs
	s.FS.Base = t.fsBase
	if err := v.SetSregs(s); err != nil {
		return err
	}
	t.userSegs, t.liveFS = true, t.fsBase
	return nil
}

// trap handles an exception taken from the program: a #PF on a page the
// program may use gets the page a frame; anything else ends the
// partition with a report. (System calls and hypercalls do not come
// here: their port writes exit directly; see portCall.)
func (p *Partition) trap(v *kvm.VCPU, t *thread, vector uint8) (Exit, outcome) {
	t.userSegs = false // the exception took the vCPU to the CPL0 stub
	r, err := v.Regs()
	if err != nil {
		return Exit{Message: fmt.Sprintf("%s; registers unreadable: %v", vectorName(vector), err)}, partitionEnds
	}
	kstack := kstackTop(t.slot)
	frame := r.RSP
	if frame < kstack-48 || frame > kstack-40 {
		return p.fault(v, fmt.Sprintf("%s with a broken exception frame (rsp %#x)", vectorName(vector), frame)), partitionEnds
	}
	mem := p.mem.Bytes()
	le := binary.LittleEndian
	var code uint64
	if hasErrorCode(vector) {
		code = le.Uint64(mem[frame:])
		frame += 8
	}
	rip, cs, rflags, rsp := le.Uint64(mem[frame:]), le.Uint64(mem[frame+8:]), le.Uint64(mem[frame+16:]), le.Uint64(mem[frame+24:])
	s, _ := v.Sregs()
	if vector == 14 && cs&3 == 3 && (code&1 == 0 || t.lastFault != s.CR2) {
		// Not present (a first touch), or a protection fault on a page
		// whose range allows the access now (mprotect widened it): back
		// or remap it and retry. A protection fault that repeats at the
		// same address is the program's.
		if code&1 != 0 {
			t.lastFault = s.CR2
		}
		p.mu.Lock()
		err := p.as.back(s.CR2, code&2 != 0, code&16 != 0)
		p.mu.Unlock()
		switch {
		case err == nil:
			p.faults.Add(1)
			r.RIP, r.RSP, r.RFLAGS = rip, rsp, rflags
			if err := p.resume(v, t, &r); err != nil {
				return Exit{Message: fmt.Sprintf("resume the program: %v", err)}, partitionEnds
			}
			return Exit{}, goOn
		case errors.Is(err, errNoMemory):
			r.RIP, r.RSP, r.RFLAGS = rip, rsp, rflags
			return Exit{Message: fmt.Sprintf("program out of memory: the partition's %d MiB are used up (page fault at %#x, rip %#x, thread %d)",
				p.cfg.Memory>>20, s.CR2, rip, t.tid), Report: p.report(r)}, partitionEnds
		}
	}
	msg := fmt.Sprintf("%s at rip %#x (cs %#x, thread %d)", vectorName(vector), rip, cs, t.tid)
	switch vector {
	case 14:
		msg += fmt.Sprintf(", address %#x, error %#x", s.CR2, code)
	case 13:
		msg += fmt.Sprintf(", error %#x", code)
	}
	r.RIP, r.RSP, r.RFLAGS = rip, rsp, rflags
	return Exit{Message: "program fault: " + msg, Report: p.report(r)}, partitionEnds
}

// portCall serves a system call (a write to syscallPort at the syscall
// landing) or a slow-path hypercall (hypercallPort in the hypercall
// page). The write must come from there: the same port written anywhere
// else is the program's fault.
func (p *Partition) portCall(v *kvm.VCPU, t *thread, port uint16) (Exit, outcome) {
	r, err := v.Regs()
	if err != nil {
		return Exit{Message: fmt.Sprintf("registers unreadable: %v", err)}, partitionEnds
	}
	// KVM reports the port write's own address on VMX, the next
	// instruction's on this machine's PVM: the write is 2 bytes long.
	at := func(addr uint64) bool { return r.RIP == addr || r.RIP == addr+2 }
	switch {
	case port == syscallPort && at(stubAddr):
		return p.syscall(v, t, &r)
	case port == hypercallPort && at(HypercallPage+hypercallSlow):
		r.RAX = p.hypercall(&r)
		r.RIP = HypercallPage + hypercallSlow + 2 // on to the page's ret
		if err := p.resume(v, t, &r); err != nil {
			return Exit{Message: fmt.Sprintf("resume the program: %v", err)}, partitionEnds
		}
		return Exit{}, goOn
	}
	return p.fault(v, fmt.Sprintf("write to port %#x at rip %#x", port, r.RIP)), partitionEnds
}

// fault ends the partition on something the program should not do.
func (p *Partition) fault(v *kvm.VCPU, what string) Exit {
	r, _ := v.Regs()
	return Exit{Message: "program fault: " + what, Report: p.report(r)}
}

// report describes the program's registers and its last system calls.
func (p *Partition) report(r kvm.Regs) string {
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
// calls, hypercalls on the slow path, page faults served, and doorbell
// writes no ioeventfd took. Doorbells KVM takes never reach the worker
// and are not counted here.
func (p *Partition) Exits() map[string]uint64 {
	return map[string]uint64{
		"syscall":       p.calls.Load(),
		"hypercall":     p.hypercalls.Load(),
		"page_fault":    p.faults.Load(),
		"doorbell_miss": p.doorbellExits.Load(),
	}
}

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
// VM and the memory.
func (p *Partition) Close() error {
	p.finish(Exit{Message: "partition closed"})
	var errs []error
	if p.relay != nil {
		errs = append(errs, p.relay.close())
	}
	if p.vm != nil {
		errs = append(errs, p.vm.Close())
	}
	if p.sys != nil {
		errs = append(errs, p.sys.Close())
	}
	if p.mem != nil {
		errs = append(errs, p.mem.Close())
	}
	return errors.Join(errs...)
}
