package kvm

import (
	"fmt"
	"sync"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/platform"
)

// pc is a Generation 1 machine on KVM: a VM with the in-kernel
// PIC/IOAPIC/LAPIC and PIT, its guest memory regions in memory slots.
type pc struct {
	pl *Platform
	vm *VM

	mu      sync.Mutex
	regions map[uint64]uint32 // slot of the region at each GPA; guarded by mu
	used    []bool            // slot numbers taken; guarded by mu

	closeOnce sync.Once
	closeErr  error
}

// warmGPA is where NewPC adds and removes a one-page slot: far above any
// RAM or ROM a PC has.
const warmGPA = 1 << 36

// NewPC makes the VM with its PC platform devices and pays the kernel's
// one-time cost of a VM's first memory slot (measured at 6-7 ms on the
// development machines, more than everything else a start does), so that
// a machine made ahead of its partition starts at once.
func (pl *Platform) NewPC(platform.PCConfig) (platform.PC, error) {
	vm, err := pl.sys.CreateVM()
	if err != nil {
		return nil, err
	}
	m := &pc{pl: pl, vm: vm, regions: map[uint64]uint32{}}
	if err := m.warm(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (m *pc) warm() error {
	if err := m.vm.PlatformDefaults(); err != nil {
		return err
	}
	page, err := guestmem.New("warm", guestmem.PageSize)
	if err != nil {
		return err
	}
	defer page.Close()
	if err := m.MapRegion(warmGPA, page.Bytes(), false); err != nil {
		return fmt.Errorf("warm-up slot: %w", err)
	}
	if err := m.UnmapRegion(warmGPA, guestmem.PageSize); err != nil {
		return fmt.Errorf("remove the warm-up slot: %w", err)
	}
	return nil
}

// MapRegion puts mem in a memory slot at gpa, replacing the region there.
func (m *pc) MapRegion(gpa uint64, mem []byte, readOnly bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.unmapLocked(gpa); err != nil {
		return err
	}
	slot := 0
	for slot < len(m.used) && m.used[slot] {
		slot++
	}
	flags := uint32(0)
	if readOnly {
		flags = MemReadOnly
	}
	if err := m.vm.SetMemory(uint32(slot), gpa, mem, flags); err != nil {
		return err
	}
	if slot == len(m.used) {
		m.used = append(m.used, false)
	}
	m.used[slot] = true
	m.regions[gpa] = uint32(slot)
	return nil
}

// UnmapRegion deletes the slot of the region at gpa, if there is one.
func (m *pc) UnmapRegion(gpa, size uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unmapLocked(gpa)
}

func (m *pc) unmapLocked(gpa uint64) error {
	slot, ok := m.regions[gpa]
	if !ok {
		return nil
	}
	if err := m.vm.SetMemory(slot, gpa, nil, 0); err != nil {
		return err
	}
	delete(m.regions, gpa)
	m.used[slot] = false
	return nil
}

// SetDevices: KVM reports port I/O and MMIO as exits, which the PC's
// run loop serves.
func (m *pc) SetDevices(platform.Devices) {}

// DeviceWrote: KVM's processors run guest code itself, with nothing
// cached to drop.
func (m *pc) DeviceWrote(gpa, size uint64) {}

// SetIRQ drives a line of the in-kernel PIC and IOAPIC.
func (m *pc) SetIRQ(irq uint32, level bool) error { return m.vm.IRQLine(irq, level) }

// CPUSignature is leaf 1 of KVM's CPUID.
func (m *pc) CPUSignature() (eax, edx uint32) {
	cpuid, err := m.pl.supportedCPUID()
	if err != nil {
		return 0, 0
	}
	for _, e := range cpuid {
		if e.Function == 1 {
			return e.EAX, e.EDX
		}
	}
	return 0, 0
}

// NewProcessor creates vCPU id with its CPUID.
func (m *pc) NewProcessor(id uint32) (platform.Processor, error) {
	v, err := m.vm.CreateVCPU(id)
	if err != nil {
		return nil, err
	}
	cpuid, err := m.pl.vcpuCPUID(id)
	if err != nil {
		return nil, err
	}
	if err := v.SetCPUID(cpuid); err != nil {
		return nil, err
	}
	return &pcVCPU{v: v}, nil
}

// Close closes the VM and its vCPUs; later calls return the first result.
func (m *pc) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.vm.Close() })
	return m.closeErr
}

// pcVCPU is a Generation 1 processor.
type pcVCPU struct{ v *VCPU }

func (p *pcVCPU) Kick() { p.v.Kick() }

// Run enters the guest and maps KVM's exit to the platform's.
func (p *pcVCPU) Run() (platform.Exit, error) {
	r, err := p.v.Run()
	if err != nil {
		return platform.Exit{}, err
	}
	return pcExit(p.v, r), nil
}

// pcExit maps one KVM exit of a PC's vCPU to the platform's vocabulary.
func pcExit(v *VCPU, r ExitReason) platform.Exit {
	switch r {
	case ExitIO:
		io := v.IO()
		if io.Data == nil {
			return platform.Exit{Kind: platform.ExitFailed, Message: "malformed I/O exit"}
		}
		return platform.Exit{Kind: platform.ExitPortIO, Port: io.Port, Size: io.Size, Count: io.Count, In: io.In, Data: io.Data}
	case ExitMMIO:
		m := v.MMIO()
		return platform.Exit{Kind: platform.ExitMMIO, Addr: m.Addr, Write: m.Write, Data: m.Data}
	case ExitKicked, ExitIntr, ExitIRQWindowOpen:
		return platform.Exit{Kind: platform.ExitKicked}
	case ExitHLT:
		return platform.Exit{Kind: platform.ExitHalt}
	case ExitShutdown:
		return platform.Exit{Kind: platform.ExitShutdown, Message: "triple fault"}
	case ExitSystemEvent:
		return platform.Exit{Kind: platform.ExitShutdown, Message: fmt.Sprintf("system event %d (reset or shutdown)", v.ExitWord())}
	case ExitFailEntry:
		return platform.Exit{Kind: platform.ExitFailed, Message: fmt.Sprintf("entry failed, hardware reason %#x", v.ExitWord())}
	case ExitInternalError:
		return platform.Exit{Kind: platform.ExitFailed, Message: fmt.Sprintf("KVM internal error, suberror %d, at %s", v.ExitWord(), where(v))}
	}
	return platform.Exit{Kind: platform.ExitFailed, Message: fmt.Sprintf("unexpected exit %v", r)}
}

// where describes a vCPU's instruction pointer for reports.
func where(v *VCPU) string {
	regs, err := v.Regs()
	if err != nil {
		return "unknown address"
	}
	sregs, err := v.Sregs()
	if err != nil {
		return fmt.Sprintf("rip %#x", regs.RIP)
	}
	return fmt.Sprintf("cs %#x (base %#x) rip %#x", sregs.CS.Selector, sregs.CS.Base, regs.RIP)
}

func (p *pcVCPU) Regs() (platform.Regs, error) {
	r, err := p.v.Regs()
	if err != nil {
		return platform.Regs{}, err
	}
	s, err := p.v.Sregs()
	if err != nil {
		return platform.Regs{}, err
	}
	return fromKVM(r, s.FS.Base), nil
}

func (p *pcVCPU) SetRegs(r platform.Regs) error {
	if err := p.v.SetRegs(toKVM(r)); err != nil {
		return err
	}
	s, err := p.v.Sregs()
	if err != nil {
		return err
	}
	if s.FS.Base != r.FSBase {
		s.FS.Base = r.FSBase
		return p.v.SetSregs(s)
	}
	return nil
}

// Close leaves the vCPU to its VM, which keeps vCPUs until it goes.
func (p *pcVCPU) Close() error { return nil }

// fromKVM and toKVM convert registers; the FS base travels in sregs.
func fromKVM(r Regs, fsBase uint64) platform.Regs {
	return platform.Regs{RAX: r.RAX, RBX: r.RBX, RCX: r.RCX, RDX: r.RDX, RSI: r.RSI, RDI: r.RDI, RSP: r.RSP, RBP: r.RBP,
		R8: r.R8, R9: r.R9, R10: r.R10, R11: r.R11, R12: r.R12, R13: r.R13, R14: r.R14, R15: r.R15,
		RIP: r.RIP, RFLAGS: r.RFLAGS, FSBase: fsBase}
}

func toKVM(r platform.Regs) Regs {
	return Regs{RAX: r.RAX, RBX: r.RBX, RCX: r.RCX, RDX: r.RDX, RSI: r.RSI, RDI: r.RDI, RSP: r.RSP, RBP: r.RBP,
		R8: r.R8, R9: r.R9, R10: r.R10, R11: r.R11, R12: r.R12, R13: r.R13, R14: r.R14, R15: r.R15,
		RIP: r.RIP, RFLAGS: r.RFLAGS}
}
