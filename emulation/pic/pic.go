// Package pic models a PC's pair of Intel 8259A programmable interrupt
// controllers: the master at ports 0x20-0x21 and the slave at 0xA0-0xA1,
// cascaded on the master's IR2, with the PIIX's edge/level control
// registers (ELCR, ports 0x4D0-0x4D1), as a platform without an in-kernel
// interrupt controller (tcg) gives a Generation 1 PC. Section numbers
// refer to Intel's 8259A datasheet (order 231468), the ELCR to the
// 82371AB PIIX4 datasheet (§3.5.3 and §4.1).
//
// The model has no clock: an input line changes (SetIRQ), the CPU asks
// whether it would be interrupted (Pending) and acknowledges (Acknowledge,
// the INTA cycle), and the guest programs the chips through their ports.
//
// What it does: the initialization sequence ICW1 to ICW4 (§"Initialization
// Command Words"), the interrupt mask (OCW1), non-specific, specific and
// rotating end of interrupt and set-priority (OCW2), reading IRR or ISR,
// the poll command and special mask mode (OCW3), automatic EOI, fully
// nested priority with rotation, cascade through IR2, and per-line edge
// or level triggering from the ELCR (as the PIIX does; ICW1's LTIM bit is
// kept but, as on a PC, the ELCR decides). Left out: special fully nested
// mode (kept, not acted on), buffered mode, and 8080/8085 call vectors.
//
// Edge-triggered lines set their IRR bit on a rising edge and keep it
// until the interrupt is acknowledged; level-triggered lines keep it
// exactly while the line is high. A request that goes away before the
// acknowledge makes the chip answer with IR7, the spurious interrupt
// (§"Interrupt Sequence").
package pic

import (
	"sync"
)

// Ports of the pair (offsets of the devices below are from these).
const (
	MasterBase = 0x20
	SlaveBase  = 0xA0
	ELCRBase   = 0x4D0
	cascadeIRQ = 2
)

// ELCR bits the PIIX leaves edge-triggered: IRQ 0, 1, 2 on the master;
// IRQ 8 and 13 on the slave (PIIX4 §4.1.8).
const (
	elcrMasterMask = 0xF8
	elcrSlaveMask  = 0xDE
)

// chip is one 8259A.
type chip struct {
	irr, isr, imr uint8
	lines         uint8 // the inputs' levels
	elcr          uint8 // level-triggered inputs
	base          uint8 // ICW2: vector of IR0
	initStep      int   // 0: ready; 1, 2, 3: waiting for ICW2, ICW3, ICW4
	needICW4      bool
	single        bool // ICW1 SNGL: no cascade
	ltim          bool // ICW1 LTIM (kept; the ELCR decides)
	autoEOI       bool
	rotateAEOI    bool
	sfnm          bool // special fully nested mode (kept)
	readISR       bool // OCW3: a read of the command port returns ISR
	poll          bool // OCW3: the next read of the command port polls
	specialMask   bool
	lowest        uint8 // the lowest-priority level (rotation); 7 after init
}

// priority returns the levels of mask in priority order's first, or -1.
func (c *chip) highest(mask uint8) int {
	if mask == 0 {
		return -1
	}
	for i := uint8(1); i <= 8; i++ {
		level := (c.lowest + i) & 7
		if mask&(1<<level) != 0 {
			return int(level)
		}
	}
	return -1
}

// pending returns the level the chip would interrupt for, or -1: the
// highest-priority request not masked and, but in special mask mode, of
// higher priority than every level in service.
func (c *chip) pending() int {
	req := c.highest(c.irr &^ c.imr)
	if req < 0 {
		return -1
	}
	inService := c.isr
	if c.specialMask {
		inService &^= c.imr
	}
	cur := c.highest(inService)
	if cur >= 0 && c.rank(req) >= c.rank(cur) {
		return -1
	}
	return req
}

// rank is a level's position in the priority order, 0 the highest.
func (c *chip) rank(level int) int { return (level - int(c.lowest) - 1) & 7 }

// setLine drives one input.
func (c *chip) setLine(level int, high bool) {
	bit := uint8(1) << level
	was := c.lines&bit != 0
	if high {
		c.lines |= bit
		if c.elcr&bit != 0 || !was {
			c.irr |= bit
		}
	} else {
		c.lines &^= bit
		if c.elcr&bit != 0 {
			c.irr &^= bit
		}
	}
}

// ack is the chip's part of INTA for level (a pending one).
func (c *chip) ack(level int) {
	bit := uint8(1) << level
	if c.elcr&bit == 0 {
		c.irr &^= bit
	}
	if c.autoEOI {
		if c.rotateAEOI {
			c.lowest = uint8(level)
		}
	} else {
		c.isr |= bit
	}
}

// eoi clears the highest-priority level in service (non-specific EOI);
// it returns the level, or -1.
func (c *chip) eoi() int {
	level := c.highest(c.isr)
	if level >= 0 {
		c.isr &^= 1 << level
	}
	return level
}

// writeCommand is a write of the command port: ICW1, OCW2 or OCW3.
func (c *chip) writeCommand(v uint8) {
	switch {
	case v&0x10 != 0: // ICW1
		c.imr, c.isr, c.irr = 0, 0, 0
		c.lowest = 7
		c.specialMask, c.readISR, c.poll = false, false, false
		c.autoEOI, c.rotateAEOI, c.sfnm = false, false, false
		c.needICW4 = v&0x01 != 0
		c.single = v&0x02 != 0
		c.ltim = v&0x08 != 0
		c.initStep = 1
		// Level-triggered inputs that are high request again at once.
		c.irr = c.lines & c.elcr
	case v&0x08 != 0: // OCW3
		if v&0x02 != 0 {
			c.readISR = v&0x01 != 0
		}
		c.poll = v&0x04 != 0
		if v&0x40 != 0 {
			c.specialMask = v&0x20 != 0
		}
	default: // OCW2
		level := int(v & 7)
		switch v >> 5 {
		case 1: // non-specific EOI
			c.eoi()
		case 3: // specific EOI
			c.isr &^= 1 << level
		case 5: // rotate on non-specific EOI
			if l := c.eoi(); l >= 0 {
				c.lowest = uint8(l)
			}
		case 7: // rotate on specific EOI
			c.isr &^= 1 << level
			c.lowest = uint8(level)
		case 6: // set priority
			c.lowest = uint8(level)
		case 4:
			c.rotateAEOI = true
		case 0:
			c.rotateAEOI = false
		}
	}
}

// writeData is a write of the data port: an ICW during initialization,
// else OCW1 (the mask).
func (c *chip) writeData(v uint8) {
	switch c.initStep {
	case 1:
		c.base = v & 0xF8
		switch {
		case !c.single:
			c.initStep = 2
		case c.needICW4:
			c.initStep = 3
		default:
			c.initStep = 0
		}
	case 2: // ICW3: the cascade wiring, fixed on a PC
		if c.needICW4 {
			c.initStep = 3
		} else {
			c.initStep = 0
		}
	case 3: // ICW4
		c.autoEOI = v&0x02 != 0
		c.sfnm = v&0x10 != 0
		c.initStep = 0
	default:
		c.imr = v
	}
}

// PIC is the master-slave pair. Its methods are safe for concurrent use;
// the notify function runs after a change that may have changed the
// pair's output, without the PIC's lock held.
type PIC struct {
	mu     sync.Mutex
	c      [2]chip // master, slave; guarded by mu
	notify func()
	acks   uint64 // guarded by mu
	spur   uint64 // spurious acknowledges; guarded by mu
}

// New makes a pair in its state after power-on: uninitialized, with the
// PIIX's reset ELCR (all edge-triggered). notify may be nil.
func New(notify func()) *PIC {
	p := &PIC{notify: notify}
	for i := range p.c {
		p.c[i].lowest = 7
	}
	return p
}

// SetIRQ drives ISA interrupt line irq (0 to 15); others are ignored.
func (p *PIC) SetIRQ(irq int, level bool) {
	if irq < 0 || irq > 15 {
		return
	}
	p.mu.Lock()
	if irq < 8 {
		p.c[0].setLine(irq, level)
	} else {
		p.c[1].setLine(irq-8, level)
		p.cascadeLocked()
	}
	p.mu.Unlock()
	p.changed()
}

// cascadeLocked drives the master's IR2 from the slave's output. The
// wire is inside the model, so it is taken as a level: a slave request
// that goes away is no request on the master either (on the parts, the
// master would still see its edge and the slave answer with IR7).
func (p *PIC) cascadeLocked() {
	m := &p.c[0]
	if p.c[1].pending() >= 0 {
		m.lines |= 1 << cascadeIRQ
		m.irr |= 1 << cascadeIRQ
	} else {
		m.lines &^= 1 << cascadeIRQ
		m.irr &^= 1 << cascadeIRQ
	}
}

func (p *PIC) changed() {
	if p.notify != nil {
		p.notify()
	}
}

// Pending reports whether the pair asserts INT: the CPU would take an
// interrupt if its IF allowed.
func (p *PIC) Pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.c[0].pending() >= 0
}

// Acknowledge is the INTA cycle: it returns the vector of the interrupt
// the CPU takes, and false if nothing is pending (the CPU takes none).
// A request withdrawn since Pending yields the spurious IR7 vector.
func (p *PIC) Acknowledge() (uint8, bool) {
	p.mu.Lock()
	defer func() {
		p.mu.Unlock()
		p.changed()
	}()
	m := &p.c[0]
	level := m.pending()
	if level < 0 {
		return 0, false
	}
	p.acks++
	m.ack(level)
	if level != cascadeIRQ || m.single {
		return m.base + uint8(level), true
	}
	s := &p.c[1]
	sl := s.pending()
	if sl < 0 {
		p.spur++
		return s.base + 7, true
	}
	s.ack(sl)
	p.cascadeLocked()
	return s.base + uint8(sl), true
}

// Stats are the pair's counters: interrupts acknowledged, of which
// spurious.
func (p *PIC) Stats() (acks, spurious uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acks, p.spur
}

// Master and Slave are the chips' two ports each (command, data).
func (p *PIC) Master() Chip { return Chip{p, 0} }
func (p *PIC) Slave() Chip  { return Chip{p, 1} }

// Chip is one 8259A's port pair as a bus device.
type Chip struct {
	p *PIC
	i int
}

// Read serves the command port (IRR, ISR or a poll) and the data port
// (the mask).
func (d Chip) Read(offset uint64, data []byte) {
	p := d.p
	p.mu.Lock()
	c := &p.c[d.i]
	var v uint8
	polled := false
	switch {
	case offset == 0 && c.poll:
		c.poll = false
		polled = true
		if level := c.pending(); level >= 0 {
			c.ack(level)
			if d.i == 1 {
				p.cascadeLocked()
			}
			v = 0x80 | uint8(level)
		}
	case offset == 0 && c.readISR:
		v = c.isr
	case offset == 0:
		v = c.irr
	default:
		v = c.imr
	}
	p.mu.Unlock()
	if polled {
		p.changed()
	}
	for i := range data {
		data[i] = v
	}
}

// Write serves ICW1, OCW2 and OCW3 (command port) and ICW2-4 and OCW1
// (data port).
func (d Chip) Write(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	p := d.p
	p.mu.Lock()
	c := &p.c[d.i]
	if offset == 0 {
		c.writeCommand(data[0])
	} else {
		c.writeData(data[0])
	}
	if d.i == 1 {
		p.cascadeLocked()
	}
	p.mu.Unlock()
	p.changed()
}

// ELCR is the two edge/level control registers as a bus device (offset
// 0: IRQ 0-7, offset 1: IRQ 8-15).
func (p *PIC) ELCR() ELCR { return ELCR{p} }

// ELCR is the PIIX's edge/level control registers.
type ELCR struct{ p *PIC }

func (e ELCR) Read(offset uint64, data []byte) {
	e.p.mu.Lock()
	var v uint8
	if offset < 2 {
		v = e.p.c[offset].elcr
	}
	e.p.mu.Unlock()
	for i := range data {
		data[i] = v
	}
}

func (e ELCR) Write(offset uint64, data []byte) {
	if len(data) == 0 || offset > 1 {
		return
	}
	mask := uint8(elcrMasterMask)
	if offset == 1 {
		mask = elcrSlaveMask
	}
	e.p.mu.Lock()
	c := &e.p.c[offset]
	c.elcr = data[0] & mask
	// A line turned level-triggered requests while high; one turned
	// edge-triggered keeps what it has.
	c.irr |= c.lines & c.elcr
	if offset == 1 {
		e.p.cascadeLocked()
	}
	e.p.mu.Unlock()
	e.p.changed()
}
