package tcg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/partita-hv/partita/emulation/lapic"
	"github.com/partita-hv/partita/partition/platform"
	"github.com/partita-hv/partita/partition/platform/tcg/uc"
)

// EFLAGS bits.
const (
	flagTF = 1 << 8
	flagIF = 1 << 9
	flagNT = 1 << 14
	flagRF = 1 << 16
	flagVM = 1 << 17
	flagAC = 1 << 18
)

// processor is one of the PC's processors. They take turns on the
// machine's one engine (the baton), each with its state in a context of
// its own while another runs.
type processor struct {
	m     *pc
	id    uint32
	lapic *lapic.APIC
	ctx   *uc.Context
	live  bool // ctx holds its state: it has run (under the baton)

	mu      sync.Mutex
	state   procState // guarded by mu
	sipi    int       // a start-up vector waiting, or -1; guarded by mu
	claimed bool      // NewProcessor gave it out; guarded by m.mu

	// Under the baton.
	halted  bool // in HLT
	haltIF  bool // with interrupts enabled: an interrupt ends it
	started bool // the BSP's reset ran

	kicked  atomic.Bool   // Kick asked: Run returns ExitKicked
	stopped atomic.Bool   // the engine was stopped for it, not by HLT
	wake    chan struct{} // an event for a waiting processor (capacity 1)
}

type procState int

const (
	stateRun      procState = iota // running (the BSP from reset)
	stateWaitSIPI                  // an AP after reset or INIT
)

func newProcessor(m *pc, id uint32) *processor {
	p := &processor{m: m, id: id, sipi: -1, wake: make(chan struct{}, 1)}
	if id != 0 {
		p.state = stateWaitSIPI
	}
	p.lapic = lapic.New(lapic.Config{ID: uint8(id), BSP: id == 0, SendIPI: m.routeIPI, EOI: m.ioapic.EOI,
		Changed: func() { m.interruptFor(p) }})
	return p
}

// NewProcessor gives out processor id (each once); the machine made
// them all with itself, so that a start-up IPI finds every one.
func (m *pc) NewProcessor(id uint32) (platform.Processor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed
	}
	if int(id) >= len(m.cpus) {
		return nil, fmt.Errorf("tcg: processor %d of a machine of %d", id, len(m.cpus))
	}
	p := m.cpus[id]
	if p.claimed {
		return nil, fmt.Errorf("tcg: processor %d exists", id)
	}
	ctx, err := m.eng.NewContext()
	if err != nil {
		return nil, err
	}
	p.ctx, p.claimed = ctx, true
	return p, nil
}

// poke wakes the processor if it waits.
func (p *processor) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// stopEngine stops the engine at its next block if p is in it.
func (p *processor) stopEngine() {
	p.stopped.Store(true)
	if p.m.running.Load() == p {
		p.m.eng.Kick()
	}
}

// Kick makes Run return ExitKicked soon.
func (p *processor) Kick() {
	p.kicked.Store(true)
	p.stopEngine()
	p.poke()
}

// init is an INIT: the processor waits for a start-up IPI (the BSP too,
// should anything send it one).
func (p *processor) init() {
	p.mu.Lock()
	p.state, p.sipi = stateWaitSIPI, -1
	p.mu.Unlock()
	p.lapic.Reset()
	p.stopEngine()
	p.poke()
}

// startup is a start-up IPI: a processor waiting for one starts in real
// mode at vector*4096 (CS = vector*256, IP = 0); others ignore it (SDM
// volume 3, 8.4.4.1 and 10.6.1).
func (p *processor) startup(vector uint8) {
	p.mu.Lock()
	if p.state == stateWaitSIPI && p.sipi < 0 {
		p.sipi = int(vector)
	}
	p.mu.Unlock()
	p.poke()
}

// interruptFor says p may have an interrupt to take: in the engine it
// stops where interrupts are enabled, waiting it looks again.
func (m *pc) interruptFor(p *processor) {
	if m.running.Load() == p {
		m.eng.WantInterruptWindow(true)
	}
	p.poke()
}

// pending reports whether p has an interrupt to take when IF allows: its
// APIC's, or the 8259A's through LINT0 (virtual wire).
func (p *processor) pending() bool {
	if _, ok := p.lapic.Pending(); ok {
		return true
	}
	return p.lapic.AcceptsPIC() && p.m.pic.Pending()
}

// acknowledge takes the interrupt pending() saw: the 8259A's first (its
// ExtINT bypasses the APIC's priorities), else the APIC's.
func (p *processor) acknowledge() (uint8, bool) {
	if p.lapic.AcceptsPIC() && p.m.pic.Pending() {
		if v, ok := p.m.pic.Acknowledge(); ok {
			return uint8(v), true
		}
	}
	return p.lapic.Acknowledge()
}

// Close has nothing to release: the machine frees the contexts.
func (p *processor) Close() error { return nil }

// Run runs the processor until Kick, a shutdown or a failure. It waits
// (without spinning) while the processor waits for a start-up IPI or is
// in HLT, and takes the engine in turn with the others.
func (p *processor) Run() (platform.Exit, error) {
	for {
		if p.kicked.Swap(false) {
			return platform.Exit{Kind: platform.ExitKicked}, nil
		}
		p.mu.Lock()
		waitSIPI := p.state == stateWaitSIPI && p.sipi < 0
		p.mu.Unlock()
		if waitSIPI || p.halted && (!p.haltIF || !p.pending()) {
			<-p.wake
			continue
		}
		exit, done, err := p.turn()
		if done || err != nil {
			return exit, err
		}
	}
}

// turn runs the processor for one turn on the engine: at most a slice,
// less if it halts, an interrupt comes to take, or it is kicked. done is
// set when Run returns exit.
func (p *processor) turn() (exit platform.Exit, done bool, err error) {
	m := p.m
	m.baton.acquire(p)
	defer m.baton.release()
	if m.isClosed() {
		return platform.Exit{Kind: platform.ExitFailed, Message: errClosed.Error()}, true, nil
	}
	if err := m.switchTo(p); err != nil {
		return platform.Exit{}, true, err
	}
	if err := p.begin(); err != nil {
		exit, err := p.stop(fmt.Sprintf("processor %d: %v", p.id, err))
		return exit, true, err
	}
	if m.anyWrite.Load() {
		if err := m.dropWritten(); err != nil {
			exit, err := p.stop(fmt.Sprintf("processor %d: %v", p.id, err))
			return exit, true, err
		}
	}
	if m.fault != "" {
		exit, err := p.stop(m.fault)
		return exit, true, err
	}
	flags, err := m.eng.Read(uc.EFLAGS)
	if err != nil {
		return platform.Exit{}, true, err
	}
	if flags&flagIF != 0 && p.pending() {
		if vector, ok := p.acknowledge(); ok {
			p.halted = false
			count(&m.interrupts)
			if err := p.deliver(vector, false, false); err != nil {
				exit, err := p.stop(err.Error())
				return exit, true, err
			}
		}
	}
	if p.halted {
		return platform.Exit{}, false, nil
	}
	eip, err := m.eng.Read(uc.EIP)
	if err != nil {
		return platform.Exit{}, true, err
	}
	// In the engine from here: a Kick or an interrupt for p now stops it
	// (running is set before kicked and pending are looked at).
	m.running.Store(p)
	if p.pending() {
		m.eng.WantInterruptWindow(true)
	}
	// With others waiting for the engine, the turn ends after a slice.
	turnOver := make(chan struct{})
	if m.ncpu > 1 {
		go func() {
			t := time.NewTicker(slice)
			defer t.Stop()
			for {
				select {
				case <-turnOver:
					return
				case <-t.C:
					if m.baton.waiting() {
						p.stopEngine()
						return
					}
				}
			}
		}()
	}
	ran := !p.kicked.Load() && !p.stopped.Load()
	if ran {
		err = m.eng.Start(eip)
	}
	m.running.Store(nil)
	close(turnOver)
	m.eng.ClearKick()
	m.eng.WantInterruptWindow(false)
	p.stopped.Store(false)
	switch {
	case !ran:
		// Asked to stop before it ran: the next turn looks why.
	case err == nil && m.eng.Stopped() == uc.NotStopped && m.fault == "":
		// HLT (EIP is past it); an interrupt ends it.
		p.halted, p.haltIF = true, p.interruptsEnabled()
		count(&m.halts)
	case err == nil:
	case errors.Is(err, uc.ErrInvalidInstruction):
		if err := p.deliver(6, true, false); err != nil {
			exit, err := p.stop(err.Error())
			return exit, true, err
		}
	default:
		exit, err := p.stop(fmt.Sprintf("processor %d: %v at %s", p.id, err, p.where()))
		return exit, true, err
	}
	return platform.Exit{}, false, nil
}

// begin brings the processor out of reset or INIT on its first turn
// after one: the BSP through the reset stub (whose result is every
// processor's reset state), an AP at its start-up vector.
func (p *processor) begin() error {
	m := p.m
	if p.id == 0 && !p.started {
		if !m.ready {
			m.mu.Lock()
			err := m.mapGapsLocked()
			m.mu.Unlock()
			if err != nil {
				return err
			}
		}
		if err := p.reset(); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
		ctx, err := m.eng.NewContext()
		if err != nil {
			return err
		}
		if err := m.eng.Save(ctx); err != nil {
			ctx.Free()
			return err
		}
		m.resetCtx, p.started, p.live = ctx, true, true
		return nil
	}
	p.mu.Lock()
	vector := p.sipi
	if p.state == stateWaitSIPI && vector >= 0 {
		p.state, p.sipi = stateRun, -1
	} else {
		vector = -1
	}
	p.mu.Unlock()
	if vector < 0 {
		return nil
	}
	if m.resetCtx == nil {
		return errors.New("a start-up IPI before the bootstrap processor's reset")
	}
	if err := m.eng.Restore(m.resetCtx); err != nil {
		return err
	}
	p.live, p.halted = true, false
	if err := m.eng.Write(uc.CS, uint64(vector)<<8); err != nil {
		return err
	}
	return m.eng.Write(uc.EIP, 0)
}

// switchTo makes the engine's processor state p's, saving the one it
// held. Under the baton.
func (m *pc) switchTo(p *processor) error {
	if m.owner == p {
		return nil
	}
	if o := m.owner; o != nil && o.live {
		if err := m.eng.Save(o.ctx); err != nil {
			return err
		}
	}
	m.owner = p
	if p.live {
		return m.eng.Restore(p.ctx)
	}
	return nil
}

// stop ends the machine's run: a failed delivery is a triple fault.
func (p *processor) stop(why string) (platform.Exit, error) {
	return platform.Exit{Kind: platform.ExitShutdown, Message: why}, nil
}

func (p *processor) interruptsEnabled() bool {
	f, err := p.m.eng.Read(uc.EFLAGS)
	return err == nil && f&flagIF != 0
}

// where describes CS:EIP for reports.
func (p *processor) where() string {
	cs, _ := p.m.eng.Read(uc.CS)
	eip, _ := p.m.eng.Read(uc.EIP)
	return fmt.Sprintf("cs %#x eip %#x", cs, eip)
}

// The reset stub, run once in a scratch page among the PCI hole's
// addresses: it loads a GDT with a 16-bit code segment, jumps to it,
// loads 16-bit data segments, clears CR0.PE and halts; the processor is
// then in real mode with 64 KiB segments, as out of reset, and reset puts
// it at F000:FFF0.
const stubGPA = 0xFEF00000

// stubEnd is EIP after the stub's HLT (an offset in its 16-bit segment).
const stubEnd = 0x20 + 22

func resetStub() []byte {
	b := make([]byte, 4096)
	le := binary.LittleEndian
	// 32-bit: lgdt [stub+0x100]; ljmp 0x08:0x20
	copy(b, []byte{0x0F, 0x01, 0x15})
	le.PutUint32(b[3:], stubGPA+0x100)
	copy(b[7:], []byte{0xEA, 0x20, 0x00, 0x00, 0x00, 0x08, 0x00})
	// 16-bit, at 0x20: mov ax, 0x10; mov ds/es/ss/fs/gs, ax;
	// mov eax, cr0; and al, 0xFE; mov cr0, eax; hlt
	copy(b[0x20:], []byte{0xB8, 0x10, 0x00, 0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0, 0x8E, 0xE0, 0x8E, 0xE8,
		0x0F, 0x20, 0xC0, 0x24, 0xFE, 0x0F, 0x22, 0xC0, 0xF4})
	// The GDT register's image at 0x100, the GDT at 0x110: null, a 16-bit
	// code segment based at the stub, a 16-bit data segment at 0, both
	// 64 KiB.
	le.PutUint16(b[0x100:], 3*8-1)
	le.PutUint32(b[0x102:], stubGPA+0x110)
	le.PutUint64(b[0x118:], 0x00009A000000FFFF|uint64(stubGPA&0xFFFFFF)<<16|uint64(stubGPA>>24)<<56)
	le.PutUint64(b[0x120:], 0x000092000000FFFF)
	return b
}

// reset takes the processor to the reset state through the stub, then to
// F000:FFF0 (the ROM's last 16 bytes, through the chipset's alias below
// 1 MiB).
func (p *processor) reset() error {
	eng := p.m.eng
	page, err := anonPage()
	if err != nil {
		return err
	}
	defer page.free()
	copy(page.b, resetStub())
	// The stub's page replaces the MMIO there while it runs.
	if err := eng.Unmap(stubGPA, 0x1000); err == nil {
		defer eng.MapMMIO(stubGPA, 0x1000)
	}
	// Writable: loading a segment sets its descriptor's accessed bit.
	if err := eng.MapPtr(stubGPA, page.b, uc.ProtRead|uc.ProtWrite|uc.ProtExec); err != nil {
		return err
	}
	// A Kick before the first run must not cut the stub short: the
	// processor's own flag keeps it, and Run looks at that next.
	eng.ClearKick()
	err = eng.Start(stubGPA)
	if uerr := eng.Unmap(stubGPA, 0x1000); err == nil {
		err = uerr
	}
	if err != nil {
		return err
	}
	cr0, _ := eng.Read(uc.CR0)
	eip, _ := eng.Read(uc.EIP)
	if cr0&1 != 0 || eip != stubEnd {
		return fmt.Errorf("the reset stub stopped at %#x with CR0 %#x", eip, cr0)
	}
	for _, r := range []struct {
		reg uc.Reg
		v   uint64
	}{{uc.CS, 0xF000}, {uc.EIP, 0xFFF0}, {uc.EFLAGS, 0x2}, {uc.EAX, 0}, {uc.EBX, 0}, {uc.ECX, 0},
		{uc.EDX, uint64(cpuidLeaf(1, 0, 0)[0])}, {uc.ESI, 0}, {uc.EDI, 0}, {uc.EBP, 0}, {uc.ESP, 0}} {
		if err := eng.Write(r.reg, r.v); err != nil {
			return err
		}
	}
	return nil
}

// softwareInterrupt is the engine's hook for INT n and exceptions, which
// it raises but does not deliver: the return address it leaves is the
// next instruction for INT n and the faulting one for a fault, which is
// what the frame must hold either way.
func (p *processor) softwareInterrupt(vector uint32) {
	if vector > 255 {
		p.m.fail(fmt.Sprintf("interrupt %d from the engine", vector))
		return
	}
	if err := p.deliver(uint8(vector), vector < 32, true); err != nil {
		p.m.fail(err.Error())
	}
}

// hasErrorCode reports whether the CPU pushes an error code for vector v
// (in protected mode).
func hasErrorCode(v uint8) bool {
	switch v {
	case 8, 10, 11, 12, 13, 14, 17:
		return true
	}
	return false
}

// deliver takes interrupt vector as the CPU would: through the IVT in
// real mode, through the IDT in 32-bit protected mode at ring 0 without
// paging. A fault's frame holds the faulting instruction's address and,
// for the vectors that have one, an error code (0: the engine does not
// say). A delivery that cannot happen is a triple fault, the machine's
// end.
func (p *processor) deliver(vector uint8, fault, software bool) error {
	eng := p.m.eng
	cr0, err := eng.Read(uc.CR0)
	if err != nil {
		return err
	}
	if cr0&1 == 0 {
		return p.deliverReal(vector)
	}
	if cr0&(1<<31) != 0 {
		return fmt.Errorf("triple fault: interrupt %d with paging on, which tcg does not deliver yet", vector)
	}
	return p.deliverProtected(vector, fault && !software && hasErrorCode(vector))
}

// regs reads several registers.
func (p *processor) regs(rs ...uc.Reg) ([]uint64, error) {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		v, err := p.m.eng.Read(r)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (p *processor) deliverReal(vector uint8) error {
	eng := p.m.eng
	var ivt [4]byte
	if err := eng.ReadMem(uint64(vector)*4, ivt[:]); err != nil {
		return fmt.Errorf("triple fault: interrupt %d: IVT unreadable: %v", vector, err)
	}
	r, err := p.regs(uc.EFLAGS, uc.CS, uc.EIP, uc.SS, uc.ESP)
	if err != nil {
		return err
	}
	flags, cs, eip, ss, esp := r[0], r[1], r[2], r[3], r[4]
	sp := uint16(esp)
	var frame [6]byte
	le := binary.LittleEndian
	le.PutUint16(frame[0:], uint16(eip))
	le.PutUint16(frame[2:], uint16(cs))
	le.PutUint16(frame[4:], uint16(flags))
	sp -= 6
	if err := p.writeStack(ss<<4, sp, frame[:]); err != nil {
		return fmt.Errorf("triple fault: interrupt %d: stack %#x:%#x unwritable: %v", vector, ss, sp, err)
	}
	for _, w := range []struct {
		reg uc.Reg
		v   uint64
	}{{uc.ESP, esp&^0xFFFF | uint64(sp)}, {uc.EFLAGS, flags &^ (flagIF | flagTF | flagAC)},
		{uc.CS, uint64(le.Uint16(ivt[2:]))}, {uc.EIP, uint64(le.Uint16(ivt[0:]))}} {
		if err := eng.Write(w.reg, w.v); err != nil {
			return err
		}
	}
	return nil
}

// writeStack writes b at the 16-bit stack's base+sp, wrapping at 64 KiB
// as the stack does.
func (p *processor) writeStack(base uint64, sp uint16, b []byte) error {
	for i, c := range b {
		if err := p.m.eng.WriteMem(base+uint64(sp+uint16(i)), []byte{c}); err != nil {
			return err
		}
	}
	return nil
}

// segmentBase reads a GDT selector's base (protected mode).
func (p *processor) segmentBase(sel uint64) (uint64, error) {
	if sel&4 != 0 {
		return 0, fmt.Errorf("selector %#x is in an LDT, which tcg does not read", sel)
	}
	gdtr, err := p.m.eng.ReadTable(uc.GDTR)
	if err != nil {
		return 0, err
	}
	if sel&^7+7 > uint64(gdtr.Limit) {
		return 0, fmt.Errorf("selector %#x beyond the GDT", sel)
	}
	var d [8]byte
	if err := p.m.eng.ReadMem(gdtr.Base+sel&^7, d[:]); err != nil {
		return 0, err
	}
	return uint64(d[2]) | uint64(d[3])<<8 | uint64(d[4])<<16 | uint64(d[7])<<24, nil
}

func (p *processor) deliverProtected(vector uint8, errorCode bool) error {
	eng := p.m.eng
	idtr, err := eng.ReadTable(uc.IDTR)
	if err != nil {
		return err
	}
	if uint64(vector)*8+7 > uint64(idtr.Limit) {
		return fmt.Errorf("triple fault: interrupt %d beyond the IDT (limit %#x)", vector, idtr.Limit)
	}
	var g [8]byte
	if err := eng.ReadMem(idtr.Base+uint64(vector)*8, g[:]); err != nil {
		return fmt.Errorf("triple fault: interrupt %d: IDT unreadable: %v", vector, err)
	}
	le := binary.LittleEndian
	offset := uint64(le.Uint16(g[0:])) | uint64(le.Uint16(g[6:]))<<16
	sel := uint64(le.Uint16(g[2:]))
	typ := g[5] & 0x1F
	if g[5]&0x80 == 0 || (typ != 0x0E && typ != 0x0F) {
		return fmt.Errorf("triple fault: interrupt %d: gate type %#x (present %v); tcg delivers through 32-bit interrupt and trap gates", vector, typ, g[5]&0x80 != 0)
	}
	r, err := p.regs(uc.EFLAGS, uc.CS, uc.EIP, uc.SS, uc.ESP)
	if err != nil {
		return err
	}
	flags, cs, eip, ss, esp := r[0], r[1], r[2], r[3], r[4]
	if cs&3 != 0 || flags&flagVM != 0 {
		return fmt.Errorf("triple fault: interrupt %d from ring %d or virtual-8086 mode, which tcg does not deliver yet", vector, cs&3)
	}
	base, err := p.segmentBase(ss)
	if err != nil {
		return fmt.Errorf("triple fault: interrupt %d: stack: %v", vector, err)
	}
	words := []uint32{uint32(eip), uint32(cs), uint32(flags)}
	if errorCode {
		words = append([]uint32{0}, words...)
	}
	sp := uint32(esp) - uint32(4*len(words))
	frame := make([]byte, 4*len(words))
	for i, w := range words {
		le.PutUint32(frame[4*i:], w)
	}
	if err := eng.WriteMem(base+uint64(sp), frame); err != nil {
		return fmt.Errorf("triple fault: interrupt %d: stack at %#x unwritable: %v", vector, base+uint64(sp), err)
	}
	flags &^= flagTF | flagNT | flagRF | flagVM
	if typ == 0x0E {
		flags &^= flagIF
	}
	for _, w := range []struct {
		reg uc.Reg
		v   uint64
	}{{uc.ESP, uint64(sp)}, {uc.EFLAGS, flags}, {uc.CS, sel}, {uc.EIP, offset}} {
		if err := eng.Write(w.reg, w.v); err != nil {
			return fmt.Errorf("triple fault: interrupt %d: %v", vector, err)
		}
	}
	return nil
}

// Regs reads the general registers (32-bit), EIP and EFLAGS.
func (p *processor) Regs() (platform.Regs, error) {
	if err := p.own(); err != nil {
		return platform.Regs{}, err
	}
	defer p.m.baton.release()
	r, err := p.regs(uc.EAX, uc.EBX, uc.ECX, uc.EDX, uc.ESI, uc.EDI, uc.ESP, uc.EBP, uc.EIP, uc.EFLAGS)
	if err != nil {
		return platform.Regs{}, err
	}
	return platform.Regs{RAX: r[0], RBX: r[1], RCX: r[2], RDX: r[3], RSI: r[4], RDI: r[5], RSP: r[6], RBP: r[7], RIP: r[8], RFLAGS: r[9]}, nil
}

// SetRegs writes them.
func (p *processor) SetRegs(v platform.Regs) error {
	if err := p.own(); err != nil {
		return err
	}
	defer p.m.baton.release()
	for _, w := range []struct {
		reg uc.Reg
		v   uint64
	}{{uc.EAX, v.RAX}, {uc.EBX, v.RBX}, {uc.ECX, v.RCX}, {uc.EDX, v.RDX}, {uc.ESI, v.RSI}, {uc.EDI, v.RDI},
		{uc.ESP, v.RSP}, {uc.EBP, v.RBP}, {uc.EIP, v.RIP}, {uc.EFLAGS, v.RFLAGS}} {
		if err := p.m.eng.Write(w.reg, w.v); err != nil {
			return err
		}
	}
	return nil
}

// own takes the baton with p's state in the engine, for a caller outside
// Run; it fails for a processor that has not started.
func (p *processor) own() error {
	p.m.baton.acquire(p)
	if !p.live && p.m.owner != p {
		p.m.baton.release()
		return fmt.Errorf("tcg: processor %d has not started", p.id)
	}
	if err := p.m.switchTo(p); err != nil {
		p.m.baton.release()
		return err
	}
	return nil
}
