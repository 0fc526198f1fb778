package tcg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/emulation/ioapic"
	"github.com/partita-hv/partita/emulation/lapic"
	"github.com/partita-hv/partita/emulation/pic"
	"github.com/partita-hv/partita/emulation/pit"
	"github.com/partita-hv/partita/partition/platform"
	"github.com/partita-hv/partita/partition/platform/tcg/uc"
)

// region is guest memory the PC maps: host memory at a guest physical
// address, or an MMIO range (mem nil).
type region struct {
	gpa      uint64
	mem      []byte
	size     uint64
	readOnly bool
}

// pc is a Generation 1 machine on one Unicorn engine.
type pc struct {
	log    hclog.Logger
	eng    *uc.Engine
	pic    *pic.PIC
	pit    *pit.PIT
	ioapic *ioapic.IOAPIC

	// mu guards the memory map and the devices; the engine's hooks run
	// with it not held (they run inside Start).
	mu      sync.Mutex
	regions map[uint64]region // by GPA, RAM, ROM and MMIO alike
	ready   bool              // the gaps below 4 GiB are MMIO (the first run)
	closed  bool              // Close has begun: the engine may be gone

	// The processors, made with the machine (a start-up IPI must find
	// every one), and their turns on the engine.
	cpus     []*processor
	ncpu     int
	baton    baton
	running  atomic.Pointer[processor] // the one inside Start
	owner    *processor                // whose state the engine holds; under the baton
	resetCtx *uc.Context               // a processor's state out of reset; under the baton

	// Pages devices wrote behind the engine (DeviceWrote), whose
	// translations the processor drops before it runs again.
	writtenMu sync.Mutex
	written   map[uint64]struct{} // page addresses
	anyWrite  atomic.Bool

	// devices are the PC's buses (SetDevices); the hooks read them on
	// every access, without a lock.
	devices atomic.Pointer[platform.Devices]

	// Set by the hooks on the thread in the engine, read after Start.
	fault string  // a reason to stop the machine
	data  [8]byte // an access's bytes: a local would escape to the heap

	// Counters: only the thread in the engine writes them (count).
	ports, mmioAccesses, interrupts, halts, romWrites atomic.Uint64
	unmappedPorts                                     atomic.Uint64
	droppedMessages                                   atomic.Uint64 // NMI, SMI, ExtINT messages: any thread

	closeOnce sync.Once
	closeErr  error
}

// NewPC makes the engine, the interrupt controllers and the timer.
func (pl *Platform) NewPC(cfg platform.PCConfig) (platform.PC, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	n := max(cfg.Processors, 1)
	if n > maxProcessors {
		return nil, fmt.Errorf("tcg: %d processors, at most %d", n, maxProcessors)
	}
	m := &pc{log: cfg.Logger.Named("tcg"), regions: map[uint64]region{}, ncpu: n}
	m.pic = pic.New(m.interruptChanged)
	m.ioapic = ioapic.New(ioapic.Config{Deliver: m.routeIOAPIC})
	// The timer's line is IRQ 0 of the 8259A and pin 0 of the IOAPIC
	// (GSI 0, KVM's default wiring).
	m.pit = pit.New(func(level bool) { m.setLine(0, level) }, nil)
	for id := range n {
		m.cpus = append(m.cpus, newProcessor(m, uint32(id)))
	}
	eng, err := uc.Open(hooks{m})
	if err != nil {
		m.closeDevices()
		return nil, fmt.Errorf("%w: %w", platform.ErrUnavailable, err)
	}
	m.eng = eng
	return m, nil
}

// maxProcessors is the most a machine has: APIC IDs are a byte, 0xFF
// the broadcast.
const maxProcessors = 64

// interruptChanged runs when the 8259A's output may have changed: it
// reaches the bootstrap processor, through LINT0.
func (m *pc) interruptChanged() {
	if m.pic.Pending() {
		m.interruptFor(m.cpus[0])
	}
}

// setLine drives ISA line irq: 8259A input irq and IOAPIC pin irq.
func (m *pc) setLine(irq int, level bool) {
	m.pic.SetIRQ(irq, level)
	m.ioapic.SetPin(irq, level)
}

func (m *pc) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// closeDevices stops the devices that run on timers.
func (m *pc) closeDevices() {
	m.pit.Close()
	for _, p := range m.cpus {
		p.lapic.Close()
	}
}

// MapRegion maps host memory at gpa, replacing the region there.
func (m *pc) MapRegion(gpa uint64, mem []byte, readOnly bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	if err := m.unmapLocked(gpa); err != nil {
		return err
	}
	prot := uc.ProtRead | uc.ProtExec
	if !readOnly {
		prot |= uc.ProtWrite
	}
	if err := m.eng.MapPtr(gpa, mem, prot); err != nil {
		return err
	}
	m.regions[gpa] = region{gpa: gpa, mem: mem, size: uint64(len(mem)), readOnly: readOnly}
	return nil
}

// UnmapRegion makes [gpa, gpa+size) MMIO, replacing the region there.
func (m *pc) UnmapRegion(gpa, size uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	if r, ok := m.regions[gpa]; ok && r.mem == nil && r.size == size {
		return nil
	}
	if err := m.unmapLocked(gpa); err != nil {
		return err
	}
	if err := m.eng.MapMMIO(gpa, size); err != nil {
		return err
	}
	m.regions[gpa] = region{gpa: gpa, size: size}
	return nil
}

func (m *pc) unmapLocked(gpa uint64) error {
	r, ok := m.regions[gpa]
	if !ok {
		return nil
	}
	if err := m.eng.Unmap(gpa, r.size); err != nil {
		return err
	}
	delete(m.regions, gpa)
	return nil
}

// mapGapsLocked makes every address below 4 GiB that no region holds
// MMIO: Unicorn stops at an unmapped address, a PC's bus reads all ones.
// (Above 4 GiB there is RAM relocated from under the PCI hole, and
// nothing beyond it.)
func (m *pc) mapGapsLocked() error {
	var rs []region
	for _, r := range m.regions {
		if r.gpa < 1<<32 {
			rs = append(rs, r)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].gpa < rs[j].gpa })
	at := uint64(0)
	for _, r := range append(rs, region{gpa: 1 << 32}) {
		if r.gpa < at {
			return fmt.Errorf("tcg: regions overlap at %#x", r.gpa)
		}
		// The reset stub's page is an MMIO range of its own: the stub
		// takes its place at each reset, and Unicorn takes tens of
		// milliseconds to cut a page out of a larger range.
		for _, end := range []uint64{stubGPA, stubGPA + 0x1000, r.gpa} {
			if end <= at || end > r.gpa {
				continue
			}
			if err := m.eng.MapMMIO(at, end-at); err != nil {
				return err
			}
			m.regions[at] = region{gpa: at, size: end - at}
			at = end
		}
		at = r.gpa + r.size
	}
	m.ready = true
	return nil
}

// SetDevices attaches the PC's buses.
func (m *pc) SetDevices(d platform.Devices) {
	m.devices.Store(&d)
}

// DeviceWrote notes pages a device wrote (DMA, from a hook or any other
// thread) and stops the engine at its next block: translations cannot be
// dropped from inside a hook, where the engine may be running one of
// them. The processor drops them before it runs again (dropWritten).
func (m *pc) DeviceWrote(gpa, size uint64) {
	if size == 0 || gpa+size < gpa {
		return
	}
	m.writtenMu.Lock()
	if m.written == nil {
		m.written = map[uint64]struct{}{}
	}
	for page := gpa &^ 0xFFF; page < gpa+size; page += 0x1000 {
		m.written[page] = struct{}{}
	}
	m.writtenMu.Unlock()
	m.anyWrite.Store(true)
	m.eng.Kick()
}

// dropWritten drops the engine's translations of the pages devices
// wrote; the thread in the engine calls it with the engine stopped.
// (Unicorn finds a page through the processor's current mode: the
// physical page while paging is off, which is how this platform runs
// guests; see the package comment.)
func (m *pc) dropWritten() error {
	m.writtenMu.Lock()
	pages := m.written
	m.written = nil
	m.anyWrite.Store(false)
	m.writtenMu.Unlock()
	for page := range pages {
		if err := m.eng.DropCode(page); err != nil {
			return err
		}
	}
	return nil
}

// SetIRQ drives an ISA line: the 8259A pair's input and the IOAPIC's
// pin of the same number.
func (m *pc) SetIRQ(irq uint32, level bool) error {
	if irq >= ioapic.Pins {
		return fmt.Errorf("tcg: IRQ %d: the IOAPIC has %d pins", irq, ioapic.Pins)
	}
	if irq < 16 {
		m.pic.SetIRQ(int(irq), level)
	}
	m.ioapic.SetPin(int(irq), level)
	return nil
}

// CPUSignature is our CPUID table's leaf 1.
func (m *pc) CPUSignature() (eax, edx uint32) {
	l := cpuidLeaf(1, 0, 0)
	return l[0], l[3]
}

// Counters reports the work the platform does inside the engine.
func (m *pc) Counters() map[string]uint64 {
	return map[string]uint64{
		"io": m.ports.Load(), "mmio": m.mmioAccesses.Load(), "interrupt": m.interrupts.Load(),
		"hlt": m.halts.Load(), "rom_write": m.romWrites.Load(), "io_unmapped": m.unmappedPorts.Load(),
		"interrupt_dropped": m.droppedMessages.Load(),
	}
}

// Close releases the engine and stops the timer.
func (m *pc) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		m.closeDevices()
		m.baton.acquire(nil) // no processor in the engine from here
		for _, p := range m.cpus {
			p.ctx.Free()
		}
		m.resetCtx.Free()
		m.closeErr = m.eng.Close()
		m.baton.release()
	})
	return m.closeErr
}

var errClosed = errors.New("tcg: the machine is closed")

// count adds one to a counter that only the thread in the engine writes:
// a plain load and store, which readers on other threads see whole,
// without the locked add an access would otherwise pay.
func count(c *atomic.Uint64) { c.Store(c.Load() + 1) }

// hooks serve the engine's callbacks; they run on the thread in Start.
type hooks struct{ m *pc }

// chipset returns the device of a port the platform itself decodes.
func (m *pc) chipset(port uint16) (dev interface {
	Read(uint64, []byte)
	Write(uint64, []byte)
}, offset uint64) {
	switch {
	case port >= pic.MasterBase && port < pic.MasterBase+2:
		return m.pic.Master(), uint64(port - pic.MasterBase)
	case port >= pic.SlaveBase && port < pic.SlaveBase+2:
		return m.pic.Slave(), uint64(port - pic.SlaveBase)
	case port >= pic.ELCRBase && port < pic.ELCRBase+2:
		return m.pic.ELCR(), uint64(port - pic.ELCRBase)
	case port >= pit.Base && port < pit.Base+pit.Size:
		return m.pit, uint64(port - pit.Base)
	case port == pit.PortB:
		return m.pit.PortB(), 0
	}
	return nil, 0
}

func (h hooks) In(port uint16, size int) uint32 {
	m := h.m
	count(&m.ports)
	b := &m.data
	*b = [8]byte{}
	data := b[:min(max(size, 1), 4)]
	if dev, off := m.chipset(port); dev != nil {
		dev.Read(off, data)
	} else if d := m.devicesOf(); d != nil {
		d.ReadPort(port, data)
	} else {
		count(&m.unmappedPorts)
		for i := range data {
			data[i] = 0xFF
		}
	}
	return binary.LittleEndian.Uint32(b[:4])
}

func (h hooks) Out(port uint16, size int, value uint32) {
	m := h.m
	count(&m.ports)
	b := &m.data
	binary.LittleEndian.PutUint32(b[:], value)
	data := b[:min(max(size, 1), 4)]
	if dev, off := m.chipset(port); dev != nil {
		dev.Write(off, data)
	} else if d := m.devicesOf(); d != nil {
		d.WritePort(port, data)
	} else {
		count(&m.unmappedPorts)
	}
}

func (m *pc) devicesOf() platform.Devices {
	if d := m.devices.Load(); d != nil {
		return *d
	}
	return nil
}

// apic returns the APIC device an MMIO address belongs to: the running
// processor's local APIC, or the IOAPIC.
func (m *pc) apic(addr uint64) (dev interface {
	Read(uint64, []byte)
	Write(uint64, []byte)
}, offset uint64) {
	switch {
	case addr-lapic.Base < lapic.Size:
		if p := m.running.Load(); p != nil {
			return p.lapic, addr - lapic.Base
		}
	case addr-ioapic.Base < ioapic.Size:
		return m.ioapic, addr - ioapic.Base
	}
	return nil, 0
}

func (h hooks) MMIORead(addr uint64, size int) uint64 {
	m := h.m
	count(&m.mmioAccesses)
	b := &m.data
	*b = [8]byte{}
	data := b[:min(max(size, 1), 8)]
	if dev, off := m.apic(addr); dev != nil {
		dev.Read(off, data)
	} else if d := m.devicesOf(); d != nil {
		d.ReadMMIO(addr, data)
	} else {
		for i := range data {
			data[i] = 0xFF
		}
	}
	return binary.LittleEndian.Uint64(b[:])
}

func (h hooks) MMIOWrite(addr uint64, size int, value uint64) {
	m := h.m
	count(&m.mmioAccesses)
	b := &m.data
	binary.LittleEndian.PutUint64(b[:], value)
	if dev, off := m.apic(addr); dev != nil {
		dev.Write(off, b[:min(max(size, 1), 8)])
	} else if d := m.devicesOf(); d != nil {
		d.WriteMMIO(addr, b[:min(max(size, 1), 8)])
	}
}

func (h hooks) Interrupt(vector uint32) {
	if p := h.m.running.Load(); p != nil {
		p.softwareInterrupt(vector)
	}
}

func (h hooks) CPUID() bool {
	eng := h.m.eng
	eax, err1 := eng.Read(uc.EAX)
	ecx, err2 := eng.Read(uc.ECX)
	if err1 != nil || err2 != nil {
		return false
	}
	var id uint32
	if p := h.m.running.Load(); p != nil {
		id = p.id
	}
	l := cpuidLeaf(uint32(eax), uint32(ecx), id)
	for i, r := range []uc.Reg{uc.EAX, uc.EBX, uc.ECX, uc.EDX} {
		eng.Write(r, uint64(l[i]))
	}
	return true
}

// WriteProtected counts a store to read-only memory (ROM, or shadow RAM
// the chipset made read-only), which the engine drops as the bus would.
func (h hooks) WriteProtected(addr uint64, size int) { count(&h.m.romWrites) }

// Unmapped is an access beyond every region (above 4 GiB): the machine
// stops.
func (h hooks) Unmapped(write, fetch bool, addr uint64, size int) {
	what := "read"
	switch {
	case write:
		what = "write"
	case fetch:
		what = "instruction fetch"
	}
	h.m.fail(fmt.Sprintf("%s of %d bytes at guest physical %#x, where nothing is", what, size, addr))
}

// fail records why the machine stops (the first reason wins) and makes
// the engine stop.
func (m *pc) fail(why string) {
	if m.fault == "" {
		m.fault = why
	}
	m.eng.Stop()
}
