package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/partita-hv/partita/partition/platform"
)

// program is a Generation 2 machine on KVM: one VM whose memory is the
// partition's, all of it in slot 0.
type program struct {
	pl  *Platform
	vm  *VM
	mem []byte

	mu    sync.Mutex
	slots [platform.MaxThreads]bool // TSS and exception stack slots taken; guarded by mu
	bells platform.Doorbells        // each ioeventfd's eventfd, which deassigning names

	closeOnce sync.Once
	closeErr  error
}

// NewProgram makes the VM, builds the platform area and maps the
// partition's memory.
func (pl *Platform) NewProgram(cfg platform.ProgramConfig) (platform.Program, error) {
	mem := cfg.Memory.Bytes()
	if err := buildProgramArea(mem); err != nil {
		return nil, err
	}
	vm, err := pl.sys.CreateVM()
	if err != nil {
		return nil, err
	}
	m := &program{pl: pl, vm: vm, mem: mem}
	if err := vm.SetMemory(0, 0, mem, 0); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// HypercallCode is the page whose doorbell is a port write KVM matches.
func (*program) HypercallCode() []byte { return hypercallCode }

// FaultAround: one exit costs about as much as zeroing 64 KiB here.
func (*program) FaultAround() uint64 { return 64 << 10 }

// Map has nothing to do: the vCPUs walk the page tables themselves. A
// page that turns present needs no TLB flush, and a protection fault on a
// page since widened is retried by the shim.
func (*program) Map(va, pa, length uint64, prot platform.Prot) error { return nil }

// AddDoorbell registers an ioeventfd.
func (m *program) AddDoorbell(port uint16, datamatch uint32, fd int) error {
	if err := m.bells.Add(port, datamatch, fd); err != nil {
		return err
	}
	dm := uint64(datamatch)
	if err := m.vm.IOEventFD(fd, uint64(port), 4, true, &dm, false); err != nil {
		m.bells.Remove(port, datamatch)
		return err
	}
	return nil
}

// RemoveDoorbell deregisters it (KVM finds the registration by its
// eventfd, which is still open).
func (m *program) RemoveDoorbell(port uint16, datamatch uint32) error {
	fd, ok := m.bells.Remove(port, datamatch)
	if !ok {
		return nil
	}
	dm := uint64(datamatch)
	return m.vm.IOEventFD(fd, uint64(port), 4, true, &dm, true)
}

// Close closes the VM and its vCPUs.
func (m *program) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.vm.Close() })
	return m.closeErr
}

// progThread is one thread of the program: a vCPU with its TSS slot.
type progThread struct {
	m    *program
	v    *VCPU
	id   int
	slot int
	segs Sregs // the thread's user segments and control registers

	// The program's registers as of the last exit (the view the shim
	// reads and changes) and what the next Run must do with them.
	view     platform.Regs
	haveView bool // view is read (else the vCPU's registers are the view)
	dirty    bool // view must be written before the next entry
	after    afterExit

	// userSegs says the vCPU holds the thread's user segments with FS
	// base liveFS: true after a return to the program, false once an
	// exception took it to the CPL0 stub. An entry that finds them so
	// skips KVM_SET_SREGS.
	userSegs bool
	liveFS   uint64
}

// afterExit is how the next Run goes back to the program.
type afterExit uint8

const (
	afterNothing afterExit = iota
	afterSyscall           // as sysret: at RCX with the flags in R11
	afterResume            // at the view's RIP (a hypercall's continuation, a faulting instruction)
)

// NewThread creates vCPU id on the calling thread and puts it in long
// mode at CPL3 with regs.
func (m *program) NewThread(id int, regs platform.Regs) (platform.Thread, error) {
	if id < 1 || id > platform.MaxThreadIDs {
		return nil, fmt.Errorf("kvm: thread id %d out of range", id)
	}
	m.mu.Lock()
	slot := -1
	for i, used := range m.slots {
		if !used {
			slot = i
			m.slots[i] = true
			break
		}
	}
	m.mu.Unlock()
	if slot < 0 {
		return nil, fmt.Errorf("kvm: at most %d threads", platform.MaxThreads)
	}
	t := &progThread{m: m, id: id, slot: slot}
	if err := t.setup(regs); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *progThread) setup(regs platform.Regs) error {
	v, err := t.m.vm.CreateVCPU(uint32(t.id))
	if err != nil {
		return err
	}
	t.v = v
	cpuid, err := t.m.pl.vcpuCPUID(uint32(t.id))
	if err != nil {
		return err
	}
	if err := v.SetCPUID(cpuid); err != nil {
		return err
	}
	s, err := v.Sregs()
	if err != nil {
		return err
	}
	code := Segment{Limit: 0xFFFFFFFF, Selector: selUserCode, Type: 0xB, Present: 1, DPL: 3, S: 1, L: 1, G: 1}
	data := Segment{Limit: 0xFFFFFFFF, Selector: selUserData, Type: 0x3, Present: 1, DPL: 3, S: 1, DB: 1, G: 1}
	s.CS, s.SS, s.DS, s.ES, s.FS, s.GS = code, data, data, data, data, data
	s.TR = Segment{Base: tssAddr + uint64(t.slot)*tssSize, Limit: tssLimit, Selector: selTSS, Type: 0xB, Present: 1}
	s.LDT = Segment{Unusable: 1}
	s.GDT = DTable{Base: gdtAddr, Limit: selTSS + 16 - 1}
	s.IDT = DTable{Base: idtAddr, Limit: 256*16 - 1}
	s.CR0 = 0x80010033 // PG, WP, NE, ET, MP, PE
	s.CR3 = platform.PageTableRoot
	s.CR4 = 0x620  // OSXMMEXCPT, OSFXSR, PAE
	s.EFER = 0xD01 // NXE, LMA, LME, SCE
	s.FS.Base = regs.FSBase
	if err := v.SetSregs(s); err != nil {
		return err
	}
	t.segs = s
	t.userSegs, t.liveFS = true, regs.FSBase
	const (
		msrSTAR  = 0xC0000081
		msrLSTAR = 0xC0000082
		msrCSTAR = 0xC0000083
		msrFMASK = 0xC0000084
	)
	if err := v.SetMSRs([]MSR{
		{Index: msrSTAR, Data: uint64(selKernelCode)<<32 | uint64(selUser32Code)<<48},
		{Index: msrLSTAR, Data: stubAddr},
		{Index: msrCSTAR, Data: stubAddr}, // a compatibility-mode syscall lands there too
		{Index: msrFMASK, Data: 0x47700},  // TF, IF, DF, IOPL, NT, AC
	}); err != nil {
		return err
	}
	if err := v.SetFPU(FPU{FCW: 0x37F, MXCSR: 0x1F80}); err != nil {
		return err
	}
	regs.RFLAGS = regs.RFLAGS&^0x47700 | 0x2
	if err := v.SetRegs(toKVM(regs)); err != nil {
		return err
	}
	// Every system call reads and writes the registers: through kvm_run,
	// not ioctls, where KVM allows.
	v.EnableSyncRegs()
	return nil
}

func (t *progThread) Kick() { t.v.Kick() }

// Close gives the thread's slot back; the vCPU stays with the VM.
func (t *progThread) Close() error {
	t.m.mu.Lock()
	t.m.slots[t.slot] = false
	t.m.mu.Unlock()
	return nil
}

// Regs returns the program's registers as of the last exit.
func (t *progThread) Regs() (platform.Regs, error) {
	if !t.haveView {
		r, err := t.v.Regs()
		if err != nil {
			return platform.Regs{}, err
		}
		t.view, t.haveView = fromKVM(r, t.liveFS), true
	}
	return t.view, nil
}

// SetRegs replaces them for the next entry.
func (t *progThread) SetRegs(r platform.Regs) error {
	t.view, t.haveView, t.dirty = r, true, true
	if t.after == afterNothing {
		t.after = afterResume
	}
	return nil
}

// SetReturn sets RAX for the return from a system call or hypercall.
func (t *progThread) SetReturn(rax uint64) {
	if _, err := t.Regs(); err != nil {
		return // Run reports the vCPU's failure
	}
	t.view.RAX = rax
	t.dirty = true
}

// TSC samples the vCPU's time-stamp counter and KVM's TSC frequency.
func (t *progThread) TSC() (uint64, uint64, error) {
	khz, err := t.v.TSCKHz()
	if err != nil {
		return 0, 0, err
	}
	if khz == 0 {
		return 0, 0, errors.New("kvm: KVM reports a TSC of 0 kHz")
	}
	tsc := []MSR{{Index: 0x10}} // IA32_TIME_STAMP_COUNTER
	if err := t.v.MSRs(tsc); err != nil {
		return 0, 0, err
	}
	return tsc[0].Data, uint64(khz), nil
}

// Run goes back to the program and runs it until the next exit.
func (t *progThread) Run() (platform.Exit, error) {
	if err := t.enter(); err != nil {
		return platform.Exit{Kind: platform.ExitFailed, Message: err.Error()}, nil
	}
	r, err := t.v.Run()
	t.haveView, t.dirty, t.after = false, false, afterNothing
	if err != nil {
		return platform.Exit{}, err
	}
	return t.decode(r)
}

// enter writes what the last exit's answer changed: the registers (as
// sysret would leave them after a system call) and, when an exception
// took the vCPU to CPL0 or the FS base moved, the user segments.
func (t *progThread) enter() error {
	if !t.dirty && t.after == afterNothing {
		return nil
	}
	r := t.view
	if t.after == afterSyscall {
		if r.RCX >= 1<<47 {
			return fmt.Errorf("return address %#x is not a canonical user address", r.RCX)
		}
		r.RIP = r.RCX
		r.RFLAGS = r.R11 & 0x3C7FD7 // as SYSRET: no RF, VM or reserved bits
	}
	r.RFLAGS = r.RFLAGS&^0x47700 | 0x2 // no TF, IF, DF, IOPL, NT, AC from the program
	if err := t.v.SetRegs(toKVM(r)); err != nil {
		return err
	}
	if t.userSegs && t.liveFS == r.FSBase {
		return nil // a system call or hypercall left them as they were
	}
	s := t.segs
	s.FS.Base = r.FSBase
	if err := t.v.SetSregs(s); err != nil {
		return err
	}
	t.userSegs, t.liveFS = true, r.FSBase
	return nil
}

// decode turns a KVM exit into the platform's: the trap protocol (stub
// ports, the hypercall page's ports, exception frames) stays here.
func (t *progThread) decode(r ExitReason) (platform.Exit, error) {
	switch r {
	case ExitKicked, ExitIntr:
		return platform.Exit{Kind: platform.ExitKicked}, nil
	case ExitShutdown:
		return platform.Exit{Kind: platform.ExitShutdown, Message: "triple fault"}, nil
	case ExitIO:
	default:
		return platform.Exit{Kind: platform.ExitFailed, Message: fmt.Sprintf("unexpected exit %v", r)}, nil
	}
	io := t.v.IO()
	if io.Data == nil {
		return platform.Exit{Kind: platform.ExitFailed, Message: "malformed I/O exit"}, nil
	}
	portIO := platform.Exit{Kind: platform.ExitPortIO, Port: io.Port, Size: io.Size, Count: io.Count, In: io.In, Data: io.Data}
	if io.In || io.Count != 1 {
		return portIO, nil // the program's own access to a port its bitmap allows
	}
	regs, err := t.Regs()
	if err != nil {
		return platform.Exit{}, err
	}
	// KVM reports a port write's own address on VMX and the next
	// instruction's on PVM: both stubs' writes are 2 bytes long, the
	// doorbell's 1.
	at := func(addr, length uint64) bool { return regs.RIP == addr || regs.RIP == addr+length }
	switch {
	case io.Port == syscallPort && io.Size == 1 && at(stubAddr, 2):
		t.after = afterSyscall
		return platform.Exit{Kind: platform.ExitSyscall, Nr: regs.RAX,
			Args: [6]uint64{regs.RDI, regs.RSI, regs.RDX, regs.R10, regs.R8, regs.R9}}, nil
	case io.Port == hypercallPort && io.Size == 1 && at(platform.HypercallPage+hypercallSlow, 2):
		t.view.RIP = platform.HypercallPage + hypercallSlow + 2 // on to the page's ret
		t.after, t.dirty = afterResume, true
		return platform.Exit{Kind: platform.ExitHypercall, Control: regs.RCX, Input: regs.RDX, Output: regs.R8}, nil
	case io.Port == platform.DoorbellPort && io.Size == 4 && at(platform.HypercallPage+hypercallDoorbell, 1):
		// A doorbell no ioeventfd matched: the shim answers it as the
		// slow path of a fast HvSignalEvent, and the page goes on with
		// the status in RAX (after its xor, which would clear it).
		conn := binary.LittleEndian.Uint32(io.Data)
		t.view.RIP = platform.HypercallPage + hypercallDoorbellDone
		t.after, t.dirty = afterResume, true
		return platform.Exit{Kind: platform.ExitHypercall, Control: 0x1005D, Input: uint64(conn)}, nil
	case io.Size == 1 && io.Port >= trapPortBase && io.Port < trapPortBase+32:
		return t.exception(uint8(io.Port-trapPortBase), regs)
	case io.Size == 1 && io.Port == trapPortOther:
		return platform.Exit{Kind: platform.ExitFailed, Message: "an interrupt or exception beyond the first 32 vectors"}, nil
	}
	return portIO, nil
}

// exception decodes the frame an exception stub left on the thread's
// exception stack: the view becomes the program's registers at the
// faulting instruction, and the next entry goes back there with the
// user segments.
func (t *progThread) exception(vector uint8, regs platform.Regs) (platform.Exit, error) {
	t.userSegs = false // the exception took the vCPU to the CPL0 stub
	kstack := kstackTop(t.slot)
	frame := regs.RSP
	if frame < kstack-48 || frame > kstack-40 {
		return platform.Exit{Kind: platform.ExitFailed, Message: fmt.Sprintf("%s with a broken exception frame (rsp %#x)", platform.VectorName(vector), frame)}, nil
	}
	le := binary.LittleEndian
	mem := t.m.mem
	e := platform.Exit{Kind: platform.ExitException, Vector: vector}
	if hasErrorCode(vector) {
		e.ErrorCode, e.HasErrorCode = le.Uint64(mem[frame:]), true
		frame += 8
	}
	rip, cs, rflags, rsp := le.Uint64(mem[frame:]), le.Uint64(mem[frame+8:]), le.Uint64(mem[frame+16:]), le.Uint64(mem[frame+24:])
	if cs&3 != 3 {
		return platform.Exit{Kind: platform.ExitFailed, Message: fmt.Sprintf("%s in the CPL0 stub at rip %#x", platform.VectorName(vector), rip)}, nil
	}
	if vector == 14 {
		s, err := t.v.Sregs()
		if err != nil {
			return platform.Exit{}, err
		}
		e.Addr = s.CR2
	}
	t.view.RIP, t.view.RSP, t.view.RFLAGS = rip, rsp, rflags
	t.after, t.dirty = afterResume, true
	return e, nil
}
