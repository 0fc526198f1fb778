// Package gen1 is the Generation 1 machine: a PC that boots a firmware
// ROM. It owns the partition's machine on its platform (package
// partition/platform: KVM today), its guest memory (its own, or the root
// service's memfd handed over as Config.GuestMemory), one locked OS thread
// per virtual processor, and the port-I/O and MMIO buses with the emulated
// legacy devices behind them. A Partition can be paused and resumed, have
// its ACPI power button pressed, and take COM1 input from a reader.
// Package partition/vmwp is the worker process's program around it.
//
// Generation 1 memory layout (a PC's):
//
//	0x0000_0000 - 0x0009_FFFF  RAM (640 KiB conventional memory)
//	0x000A_0000 - 0x000B_FFFF  VGA hole (MMIO; nothing decodes it yet)
//	0x000C_0000 - 0x000F_FFFF  13 segments under the i440FX's PAM
//	                           registers: each reads and writes RAM, reads
//	                           RAM with writes dropped, or reaches the PCI
//	                           side — the ROM's last 128 KiB (ending at
//	                           1 MiB) where it covers the segment, nothing
//	                           elsewhere. At reset all are on the PCI side.
//	0x0010_0000 - top of RAM   RAM, below the PCI hole at 0xE000_0000
//	4 GiB - ROM size - 4 GiB   the firmware ROM, read-only
//
// Writes to read-only memory exit as MMIO and are dropped by the bus.
//
// Each vCPU's thread maps every exit to one outcome — a bus access, a stop
// with a reason, or re-entry — and counts it by kind. Before each entry
// into the guest it passes the pause gate (platform.Gate), where it parks
// while the partition is paused.
package gen1

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/emulation/acpipm"
	"github.com/partita-hv/partita/emulation/bus"
	"github.com/partita-hv/partita/emulation/cmos"
	"github.com/partita-hv/partita/emulation/fwcfg"
	"github.com/partita-hv/partita/emulation/i8042"
	"github.com/partita-hv/partita/emulation/ide"
	"github.com/partita-hv/partita/emulation/pci"
	"github.com/partita-hv/partita/emulation/smbios"
	"github.com/partita-hv/partita/emulation/uart"
	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/accel"
	"github.com/partita-hv/partita/partition/platform"
	"github.com/partita-hv/partita/vsp/disk"
)

// MaxMemory is the most RAM a partition has: 64 GiB, what Hyper-V of
// the design's era gave a virtual machine. RAM beyond the PCI hole's
// start (3.5 GiB) is relocated above 4 GiB, as on QEMU's PC.
const MaxMemory = 64 << 30

// Layout constants.
const (
	vgaHoleStart = 0xA0000
	optionROMs   = 0xC0000
	highRAM      = 0x100000
	pciHole      = 0xE000_0000
	fourGiB      = 1 << 32
	aliasSize    = 128 << 10
	maxROM       = 16 << 20

	// PMBase is where the PM1 block decodes at reset; the guest moves it
	// through the PIIX4 PM function's PMBA (SeaBIOS also uses 0x600).
	PMBase       = 0x600
	debugConPort = 0x402
	postPort     = 0x80
	com1Base     = 0x3F8
	com2Base     = 0x2F8
	com1IRQ      = 4
	com2IRQ      = 3
	cmosBase     = 0x70
	rtcIRQ       = 8
	sciIRQ       = 9 // the PIIX4's SCI, as SeaBIOS's FADT and MADT describe it
	keyboardIRQ  = 1
	mouseIRQ     = 12
)

// Config describes a partition to run.
type Config struct {
	Name       string
	ID         string // the partition's GUID, for the firmware's SMBIOS tables (optional)
	Firmware   string // ROM image, a multiple of 64 KiB up to 16 MiB
	Disks      []string
	Memory     uint64 // bytes of RAM, a multiple of 4 KiB
	Processors int
	Serial     io.Writer // COM1 output
	// DebugCon, if set, receives what the guest writes to the debug port
	// 0x402. Nil: there is no device at 0x402, as on QEMU without
	// -debugcon, and SeaBIOS, which logs there only when it reads back
	// 0xE9, does not log: that saves 1,349 of the 2,397 port exits of its
	// POST up to the banner (measured; the banner comes no sooner, so
	// those exits were not what makes the POST slower than QEMU's).
	DebugCon io.Writer
	Logger   hclog.Logger

	// GuestMemory, if set, is the partition's RAM: normally the memfd the
	// root service created and passed over the control socket, mapped
	// with guestmem.Open. Its size must equal Memory. New takes ownership
	// whatever the outcome: the partition closes it on Close, and New
	// closes it when it fails. Nil: New creates the memory itself.
	GuestMemory *guestmem.Memory

	// Prepared, if set, is the machine to use (see Prepare); New takes
	// ownership whatever the outcome. Nil: New makes it on Platform.
	Prepared *Prepared
	// Platform runs the processors when Prepared is nil; nil: the one
	// accel.Auto chooses, which the partition closes with itself.
	Platform platform.Platform
}

// StopReason says why a partition stopped.
type StopReason struct {
	PowerOff bool   // the guest powered off cleanly
	Reset    bool   // the guest asked for a reset: the partition should start again
	Message  string // one line
}

func (r StopReason) String() string { return r.Message }

// Partition is a running partition.
type Partition struct {
	cfg      Config
	log      hclog.Logger
	pc       platform.PC
	prepared *Prepared         // owns pc
	ownPL    platform.Platform // opened by New, closed with the partition
	mem      *guestmem.Memory
	rom      *guestmem.Memory
	pio      *bus.Bus
	mmio     *bus.Bus
	com1     *uart.UART
	cmos     *cmos.CMOS
	pm       *acpipm.PM
	pci      *pci.Host
	ide      *ide.Channel

	pamMu   sync.Mutex
	pamMode []pamMode // by PAM segment; guarded by pamMu

	disks []disk.Disk

	// gate is the pause gate and stop signal: a vCPU thread is inside it
	// from before it enters the guest until it has handled the exit.
	gate    *platform.Gate
	stop    sync.Once
	reason  StopReason // written once, before the gate stops
	running sync.WaitGroup

	lastPOST atomic.Uint32
	exits    [platform.NumExitKinds]atomic.Uint64 // by exit kind

	closeOnce sync.Once
	closeErr  error
}

// Errors.
var (
	// ErrConfig: a configuration that cannot run.
	ErrConfig = errors.New("worker: bad configuration")
	// ErrStopped: the partition has stopped; it cannot be paused,
	// resumed or have its power button pressed.
	ErrStopped = errors.New("worker: the partition has stopped")
	// ErrNoPowerButtonListener: the power button was pressed but the guest
	// has not enabled the ACPI power-button event (PWRBTN_EN) or ACPI
	// mode (SCI_EN), so nothing will act on it. The text is what the
	// root service reports; it carries no package prefix.
	ErrNoPowerButtonListener = errors.New("guest does not listen for the ACPI power button")
)

// New builds the partition: memory, ROM, VM, devices. It does not start
// the vCPUs.
func New(cfg Config) (*Partition, error) {
	p, err := newPartition(cfg)
	if err != nil && cfg.GuestMemory != nil {
		cfg.GuestMemory.Close() // idempotent: p.Close may have closed it
	}
	if err != nil && cfg.Prepared != nil {
		cfg.Prepared.Close() // idempotent, like GuestMemory's
	}
	return p, err
}

func newPartition(cfg Config) (*Partition, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Processors <= 0 {
		cfg.Processors = 1
	}
	if cfg.Processors > 64 {
		return nil, fmt.Errorf("%w: %d processors, at most 64", ErrConfig, cfg.Processors)
	}
	if cfg.Memory < 1<<20 || cfg.Memory%guestmem.PageSize != 0 || cfg.Memory > MaxMemory {
		return nil, fmt.Errorf("%w: memory %d bytes: want 1 MiB .. %d GiB in whole pages", ErrConfig, cfg.Memory, MaxMemory>>30)
	}
	if m := cfg.GuestMemory; m != nil && (m.Size() != cfg.Memory || uint64(len(m.Bytes())) != cfg.Memory) {
		// A closed Memory has no bytes.
		return nil, fmt.Errorf("%w: guest memory holds %d bytes (%d mapped), the partition %d", ErrConfig, m.Size(), len(m.Bytes()), cfg.Memory)
	}
	p := &Partition{cfg: cfg, log: cfg.Logger.Named("gen1").With("partition", cfg.Name), gate: platform.NewGate(),
		pio: bus.New("pio"), mmio: bus.New("mmio")}
	ok := false
	defer func() {
		if !ok {
			p.Close()
		}
	}()
	if err := p.loadROM(); err != nil {
		return nil, err
	}
	for _, path := range cfg.Disks {
		d, err := disk.OpenRaw(path, false)
		if err != nil {
			return nil, err
		}
		p.disks = append(p.disks, d)
	}
	var err error
	if p.mem = cfg.GuestMemory; p.mem == nil {
		if p.mem, err = guestmem.New(cfg.Name, cfg.Memory); err != nil {
			return nil, err
		}
	}
	pr := cfg.Prepared
	if pr != nil && pr.processors != cfg.Processors {
		return nil, fmt.Errorf("%w: a machine prepared for %d processors, the partition has %d", ErrConfig, pr.processors, cfg.Processors)
	}
	if pr == nil {
		pl := cfg.Platform
		if pl == nil {
			if pl, err = accel.Open(accel.Auto, 1); err != nil {
				return nil, err
			}
			p.ownPL = pl
		}
		if pr, err = Prepare(pl, cfg.Processors); err != nil {
			return nil, err
		}
	}
	p.prepared, p.pc = pr, pr.pc // the partition's Close releases them
	if err := p.mapMemory(); err != nil {
		return nil, err
	}
	if err := p.addDevices(); err != nil {
		return nil, err
	}
	p.pc.SetDevices(buses{p})
	ok = true
	return p, nil
}

// loadROM reads the firmware into its own memfd.
func (p *Partition) loadROM() error {
	img, err := os.ReadFile(p.cfg.Firmware)
	if err != nil {
		return fmt.Errorf("%w: firmware: %w", ErrConfig, err)
	}
	if len(img) == 0 || len(img)%(64<<10) != 0 || len(img) > maxROM {
		return fmt.Errorf("%w: firmware %s is %d bytes: want a multiple of 64 KiB, at most 16 MiB", ErrConfig, p.cfg.Firmware, len(img))
	}
	if p.rom, err = guestmem.New(p.cfg.Name+"-rom", uint64(len(img))); err != nil {
		return err
	}
	copy(p.rom.Bytes(), img)
	return nil
}

// lowMemory is the RAM below the PCI hole, at guest physical 0; the rest
// (highMemory) is at 4 GiB. The memory's bytes hold both, low first.
func (p *Partition) lowMemory() uint64  { return min(p.cfg.Memory, pciHole) }
func (p *Partition) highMemory() uint64 { return p.cfg.Memory - p.lowMemory() }

func (p *Partition) mapMemory() error {
	ram, rom := p.mem.Bytes(), p.rom.Bytes()
	low := p.lowMemory()
	if err := p.pc.MapRegion(0, ram[:vgaHoleStart], false); err != nil {
		return err
	}
	if err := p.pc.MapRegion(fourGiB-uint64(len(rom)), rom, true); err != nil {
		return err
	}
	if low > highRAM {
		if err := p.pc.MapRegion(highRAM, ram[highRAM:low], false); err != nil {
			return err
		}
	}
	if p.highMemory() > 0 {
		if err := p.pc.MapRegion(fourGiB, ram[low:], false); err != nil {
			return err
		}
	}
	p.pamMode = make([]pamMode, len(pci.PAMSegments))
	return p.applyPAM(pci.PAM{})
}

// physMem is guest memory as devices reach it by guest physical address
// (bus-master DMA): RAM below the PCI hole and from 4 GiB; an access to
// anything else, or across the hole, is an error.
type physMem struct{ p *Partition }

func (m physMem) Slice(gpa, length uint64) ([]byte, error) {
	low, high := m.p.lowMemory(), m.p.highMemory()
	switch {
	case gpa < low && length <= low-gpa:
		return m.p.mem.Slice(gpa, length)
	case gpa >= fourGiB && gpa-fourGiB < high && length <= high-(gpa-fourGiB):
		return m.p.mem.Slice(low+gpa-fourGiB, length)
	}
	return nil, fmt.Errorf("guest physical %#x+%#x is not RAM", gpa, length)
}

// Wrote passes a DMA write on to the platform (see platform.PC).
func (m physMem) Wrote(gpa, length uint64) { m.p.pc.DeviceWrote(gpa, length) }

// pamMode is how one PAM segment is mapped.
type pamMode int

const (
	pamUnset   pamMode = iota // not mapped yet
	pamNone                   // PCI side, no ROM: reads all ones
	pamROM                    // PCI side: the ROM alias, read-only
	pamRAM                    // RAM, read/write
	pamRAMRead                // RAM, writes dropped
)

// applyPAM maps every segment as the PAM registers say. It runs on the
// vCPU thread that wrote the register; the other vCPUs are still waiting
// for their start-up IPI while the BIOS shadows itself.
func (p *Partition) applyPAM(regs pci.PAM) error {
	p.pamMu.Lock()
	defer p.pamMu.Unlock()
	ram, rom := p.mem.Bytes(), p.rom.Bytes()
	alias := uint64(min(len(rom), aliasSize))
	for i, seg := range pci.PAMSegments {
		mode, mem, readOnly := pamNone, []byte(nil), false
		switch a := seg.Access(regs); {
		case a&pci.PAMRead != 0 && a&pci.PAMWrite != 0:
			mode, mem = pamRAM, ram[seg.Base:seg.Base+seg.Size]
		case a&pci.PAMRead != 0:
			mode, mem, readOnly = pamRAMRead, ram[seg.Base:seg.Base+seg.Size], true
		case seg.Base >= highRAM-alias:
			// Reads reach the ROM. (Write-only RAM, reads from the ROM and
			// writes to RAM, cannot be expressed with memory regions;
			// such writes are dropped.)
			off := uint64(len(rom)) - (highRAM - seg.Base)
			mode, mem, readOnly = pamROM, rom[off:off+seg.Size], true
		}
		if mode == p.pamMode[i] {
			continue
		}
		if mem == nil {
			if err := p.pc.UnmapRegion(seg.Base, seg.Size); err != nil {
				return err
			}
		} else if err := p.pc.MapRegion(seg.Base, mem, readOnly); err != nil {
			return err
		}
		p.pamMode[i] = mode
	}
	return nil
}

func (p *Partition) addDevices() error {
	serial := p.cfg.Serial
	if serial == nil {
		serial = io.Discard
	}
	p.com1 = uart.New(serial, p.irqLine(com1IRQ))
	p.cmos = cmos.New(cmos.Config{Memory: p.lowMemory(), HighMemory: p.highMemory(), IRQ: p.irqLine(rtcIRQ)})
	fw, err := p.firmwareConfig()
	if err != nil {
		return err
	}
	kbc := i8042.New(i8042.Config{
		IRQ1:  p.irqLine(keyboardIRQ),
		IRQ12: p.irqLine(mouseIRQ),
		Reset: func() {
			p.Stop(StopReason{Reset: true, Message: "guest reset the machine (i8042 reset line)"})
		},
	})
	p.pci = pci.NewHost()
	if err := p.pci.Add("i440fx", 0, 0, pci.NewI440FX(func(regs pci.PAM) {
		if err := p.applyPAM(regs); err != nil {
			p.Stop(StopReason{Message: fmt.Sprintf("remap PAM segments: %v", err)})
		}
	})); err != nil {
		return err
	}
	if err := p.pci.Add("piix3-isa", 1, 0, pci.NewPIIX3()); err != nil {
		return err
	}
	var master disk.Disk
	if len(p.disks) > 0 {
		master = p.disks[0]
	}
	p.ide = ide.NewChannel(master, physMem{p}, p.irqLine(ide.PrimaryIRQ))
	busMaster := &movable{p: p, name: "ide-busmaster", size: 8, dev: p.ide.BusMaster()}
	if err := p.pci.Add("piix3-ide", 1, 1, ide.NewPCIFunction(busMaster.place)); err != nil {
		return err
	}
	p.pm = acpipm.New(p.powerOff, p.irqLine(sciIRQ))
	pm := &movable{p: p, name: "acpi-pm", size: acpipm.Size, dev: p.pm}
	if err := p.pci.Add("piix4-pm", 1, 3, acpipm.NewPCIFunction(PMBase, pm.place)); err != nil {
		return err
	}
	pm.place(PMBase, true)
	devs := []portDevice{
		{"pci", pci.PortBase, 8, p.pci},
		{"cmos", cmosBase, cmos.Size, p.cmos},
		{"fw_cfg", fwcfg.Base, fwcfg.Size, fw},
		{"ide0", ide.PrimaryCommandBase, 8, p.ide.CommandBlock()},
		{"ide0-control", ide.PrimaryControlBase, 1, p.ide.ControlBlock()},
		{"i8042-data", i8042.DataPortBase, 1, kbc.DataPort()},
		{"i8042-command", i8042.CommandPortBase, 1, kbc.CommandPort()},
		{"com1", com1Base, 8, p.com1},
		{"com2", com2Base, 8, uart.New(nil, p.irqLine(com2IRQ))},
		{"post", postPort, 1, postCode{&p.lastPOST}},
	}
	if p.cfg.DebugCon != nil {
		devs = append(devs, portDevice{"debugcon", debugConPort, 1, writerPort{p.cfg.DebugCon}})
	}
	for _, d := range devs {
		if err := p.pio.Register(d.name, d.base, d.size, d.dev); err != nil {
			return err
		}
	}
	return nil
}

// buses are the PC's port and MMIO buses as the platform reaches them
// when it serves accesses itself (tcg).
type buses struct{ p *Partition }

func (b buses) ReadPort(port uint16, data []byte)  { b.p.pio.Read(uint64(port), data) }
func (b buses) WritePort(port uint16, data []byte) { b.p.pio.Write(uint64(port), data) }
func (b buses) ReadMMIO(addr uint64, data []byte)  { b.p.mmio.Read(addr, data) }
func (b buses) WriteMMIO(addr uint64, data []byte) { b.p.mmio.Write(addr, data) }

// portDevice is a device at a fixed port range.
type portDevice struct {
	name       string
	base, size uint64
	dev        bus.Device
}

// movable is a device whose port base the guest programs through PCI
// configuration (a BAR, PMBA): it is registered on the port bus at the
// current base while decoding is enabled, and nowhere otherwise.
type movable struct {
	p    *Partition
	name string
	size uint64
	dev  bus.Device

	mu   sync.Mutex
	base uint16 // where it is registered, 0: nowhere; guarded by mu
}

// place moves the registration. A base that collides with another device
// is refused and logged; the device then stays unmapped.
func (m *movable) place(base uint16, enabled bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.base != 0 {
		m.p.pio.Unregister(uint64(m.base))
		m.base = 0
	}
	if !enabled || base == 0 {
		return
	}
	if err := m.p.pio.Register(m.name, uint64(base), m.size, m.dev); err != nil {
		m.p.log.Warn("device not placed", "device", m.name, "base", base, "error", err)
		return
	}
	m.base = base
}

// firmwareConfig fills QEMU's fw_cfg as SeaBIOS expects on a QEMU/KVM
// PC: RAM size and e820 map, CPU counts, no boot-menu prompt, and its
// serial console on COM1.
func (p *Partition) firmwareConfig() (*fwcfg.Device, error) {
	fw := fwcfg.New()
	le16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	cpus := uint16(p.cfg.Processors)
	items := []struct {
		key  uint16
		data []byte
	}{
		{fwcfg.KeyRAMSize, binary.LittleEndian.AppendUint64(nil, p.cfg.Memory)},
		{fwcfg.KeyNBCPUs, le16(cpus)},
		{fwcfg.KeyMaxCPUs, le16(cpus)},
		{fwcfg.KeyBootMenu, le16(0)},
		{fwcfg.KeyNUMA, make([]byte, 8+8*int(cpus))}, // no NUMA nodes
	}
	for _, it := range items {
		if err := fw.AddItem(it.key, it.data); err != nil {
			return nil, err
		}
	}
	type file struct {
		name string
		data []byte
	}
	files := []file{
		{"etc/e820", fwcfg.E820(p.e820())},
		{"etc/sercon-port", binary.LittleEndian.AppendUint64(nil, com1Base)},
	}
	anchor, tables, err := p.smbiosTables()
	if err != nil {
		return nil, err
	}
	files = append(files, file{"etc/smbios/smbios-anchor", anchor}, file{"etc/smbios/smbios-tables", tables})
	for _, f := range files {
		if err := fw.AddFile(f.name, f.data); err != nil {
			return nil, err
		}
	}
	return fw, nil
}

// e820 is the RAM map fw_cfg gives the firmware: below the PCI hole and
// from 4 GiB. (SeaBIOS adds its own reservations: the EBDA, its ROM, the
// ACPI tables.)
func (p *Partition) e820() []fwcfg.E820Entry {
	m := []fwcfg.E820Entry{{Addr: 0, Size: p.lowMemory(), Type: fwcfg.E820RAM}}
	if high := p.highMemory(); high > 0 {
		m = append(m, fwcfg.E820Entry{Addr: fourGiB, Size: high, Type: fwcfg.E820RAM})
	}
	return m
}

// smbiosTables describes the partition to its firmware: SeaBIOS
// publishes these instead of composing its own, which costs it about
// 290 ms of emulated code here.
func (p *Partition) smbiosTables() (anchor, tables []byte, err error) {
	m := smbios.Machine{Manufacturer: "Partita", Product: "Virtual Machine", Version: "Generation 1",
		Serial: p.cfg.Name, Processors: p.cfg.Processors}
	for _, e := range p.e820() {
		m.RAM = append(m.RAM, smbios.Range{Base: e.Addr, Size: e.Size})
	}
	if id, err := parseGUID(p.cfg.ID); err == nil {
		m.UUID = id
	}
	eax, edx := p.pc.CPUSignature()
	m.CPUID = uint64(edx)<<32 | uint64(eax)
	return smbios.Build(m)
}

// parseGUID reads the text form of a GUID into its 16 bytes, in reading
// order.
func parseGUID(s string) ([16]byte, error) {
	var u [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 {
		return u, fmt.Errorf("%q is not a GUID", s)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("%q is not a GUID: %w", s, err)
	}
	return u, nil
}

// irqLine drives an ISA interrupt line of the machine's PIC/IOAPIC.
func (p *Partition) irqLine(irq uint32) func(bool) {
	return func(level bool) {
		if err := p.pc.SetIRQ(irq, level); err != nil {
			p.log.Warn("irq line", "irq", irq, "error", err)
		}
	}
}

// PowerButton presses the ACPI fixed-feature power button: PWRBTN_STS is
// set in the PM1 block and, if the guest enabled the event (PWRBTN_EN) and
// ACPI mode (SCI_EN), the SCI is raised on IRQ 9 until the guest clears
// the status. If the guest does not listen it returns
// ErrNoPowerButtonListener (the status bit is set anyway, as on the
// hardware); after a stop, ErrStopped. A paused guest sees the press when
// it resumes.
func (p *Partition) PowerButton() error {
	if p.isStopped() {
		return ErrStopped
	}
	if !p.pm.PowerButton() {
		return ErrNoPowerButtonListener
	}
	return nil
}

// COM1 is the first serial port.
func (p *Partition) COM1() *uart.UART { return p.com1 }

// ConsoleInput copies r to COM1's receive side (the worker's standard
// input, in vmwp) with flow control: when the guest's receive FIFO is full
// it waits for the guest to read, so no byte is dropped. It returns nil
// when r reports io.EOF or the partition stops, and r's error otherwise;
// bytes read from r before a stop may be left undelivered. A stop cannot
// interrupt r.Read itself: if that blocks, ConsoleInput returns only when
// it does, so callers that need a prompt return close r or read from
// something they control.
func (p *Partition) ConsoleInput(r io.Reader) error {
	buf := make([]byte, 512)
	for !p.isStopped() {
		n, err := r.Read(buf)
		if n > 0 && p.com1.ReceiveAll(buf[:n], p.gate.Stopped()) < n {
			return nil // stopped with the FIFO full
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("worker: console input: %w", err)
		}
	}
	return nil
}

// LastPOSTCode is the last value written to port 0x80.
func (p *Partition) LastPOSTCode() byte { return byte(p.lastPOST.Load()) }

// Exits returns exit counts by kind. A platform that serves port I/O,
// MMIO and HLT inside its processors' runs (tcg) counts them itself; they
// are added to their kinds.
func (p *Partition) Exits() map[platform.ExitKind]uint64 {
	m := make(map[platform.ExitKind]uint64)
	for i := range p.exits {
		if n := p.exits[i].Load(); n != 0 {
			m[platform.ExitKind(i)] = n
		}
	}
	if c, ok := p.pc.(platform.Counters); ok {
		counts := c.Counters()
		for _, k := range []platform.ExitKind{platform.ExitPortIO, platform.ExitMMIO, platform.ExitHalt} {
			if n := counts[k.String()]; n != 0 {
				m[k] += n
			}
		}
	}
	return m
}

// PIOStats returns the port-I/O bus counters.
func (p *Partition) PIOStats() bus.Stats { return p.pio.Stats() }

// Start starts one thread per vCPU. If Pause ran before, they park
// before their first entry into the guest.
func (p *Partition) Start() {
	for i := 0; i < p.cfg.Processors; i++ {
		p.running.Add(1)
		go p.runVCPU(uint32(i))
	}
}

// Pause parks every vCPU thread outside the guest and returns once all of
// them are parked (at once if the partition has not started). Devices
// driven by host timers (the RTC) keep running; their interrupts wait for
// Resume. Pausing a paused partition does nothing. After a stop, and if
// the partition stops while Pause waits, it returns ErrStopped.
func (p *Partition) Pause() error { return stopErr(p.gate.Pause()) }

// Resume lets parked vCPU threads enter the guest again; it does not wait
// for them to. Resuming a running partition does nothing. After a stop it
// returns ErrStopped.
func (p *Partition) Resume() error { return stopErr(p.gate.Resume()) }

func stopErr(err error) error {
	if errors.Is(err, platform.ErrStopped) {
		return ErrStopped
	}
	return err
}

// Paused reports whether the partition is paused: Pause has been called
// and Resume has not since. (A Pause still waiting for its vCPUs counts.)
func (p *Partition) Paused() bool { return p.gate.Paused() }

// Wait blocks until the partition stops and returns why.
func (p *Partition) Wait() StopReason {
	<-p.gate.Stopped()
	p.running.Wait()
	return p.reason
}

// Stop stops the partition with a reason (the first reason wins).
func (p *Partition) Stop(reason StopReason) {
	p.stop.Do(func() {
		p.reason = reason
		p.gate.Stop()
	})
}

func (p *Partition) powerOff() {
	p.Stop(StopReason{PowerOff: true, Message: "guest powered off"})
}

func (p *Partition) isStopped() bool { return p.gate.IsStopped() }

// runVCPU is one vCPU's thread: create it there (a platform ties a
// processor to the thread that runs it), and run until the partition
// stops. The thread is inside the gate from each entry until it has
// handled the exit, so a pause never cuts a device access in two.
func (p *Partition) runVCPU(id uint32) {
	defer p.running.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	v, err := p.pc.NewProcessor(id)
	if err != nil {
		p.Stop(StopReason{Message: fmt.Sprintf("vcpu %d: %v", id, err)})
		return
	}
	defer v.Close()
	p.gate.Add(v)
	defer p.gate.Remove(v)
	for p.gate.Enter() {
		e, err := v.Run()
		if err != nil {
			p.gate.Leave()
			p.Stop(StopReason{Message: fmt.Sprintf("vcpu %d: %v", id, err)})
			return
		}
		if int(e.Kind) < len(p.exits) {
			p.exits[e.Kind].Add(1)
		}
		reason, stop := p.handleExit(id, e)
		p.gate.Leave()
		if stop {
			p.Stop(reason)
			return
		}
	}
}

// handleExit maps one exit to its outcome.
func (p *Partition) handleExit(id uint32, e platform.Exit) (StopReason, bool) {
	switch e.Kind {
	case platform.ExitPortIO:
		for i := uint32(0); i < e.Count; i++ {
			chunk := e.Data[i*uint32(e.Size) : (i+1)*uint32(e.Size)]
			if e.In {
				p.pio.Read(uint64(e.Port), chunk)
			} else {
				p.pio.Write(uint64(e.Port), chunk)
			}
		}
	case platform.ExitMMIO:
		if e.Write {
			p.mmio.Write(e.Addr, e.Data)
		} else {
			p.mmio.Read(e.Addr, e.Data)
		}
	case platform.ExitKicked, platform.ExitHalt:
		// Re-enter (after checking for a stop).
	case platform.ExitShutdown, platform.ExitFailed:
		return StopReason{Message: fmt.Sprintf("vcpu %d: %s", id, e.Message)}, true
	default:
		return StopReason{Message: fmt.Sprintf("vcpu %d: unexpected exit %v", id, e.Kind)}, true
	}
	return StopReason{}, false
}

// Close releases everything: disks are flushed (fsync) and closed.
// Later calls return the first call's result.
func (p *Partition) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Partition) close() error {
	var errs []error
	if p.cmos != nil {
		p.cmos.Close()
	}
	for _, d := range p.disks {
		errs = append(errs, d.Close())
	}
	if p.prepared != nil {
		errs = append(errs, p.prepared.Close())
	}
	if p.ownPL != nil {
		errs = append(errs, p.ownPL.Close())
	}
	if p.mem != nil {
		errs = append(errs, p.mem.Close())
	}
	if p.rom != nil {
		errs = append(errs, p.rom.Close())
	}
	return errors.Join(errs...)
}

// writerPort is a write-only port whose bytes go to a writer (QEMU's
// debugcon at 0x402); reads return 0xE9, the value Bochs and QEMU use to
// say the port is present.
type writerPort struct{ w io.Writer }

func (d writerPort) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0xE9
	}
}

func (d writerPort) Write(_ uint64, data []byte) { d.w.Write(data) }

// postCode records POST codes written to port 0x80.
type postCode struct{ last *atomic.Uint32 }

func (c postCode) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = byte(c.last.Load())
	}
}

func (c postCode) Write(_ uint64, data []byte) { c.last.Store(uint32(data[0])) }
