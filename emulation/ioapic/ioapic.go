// Package ioapic is the I/O APIC of a PC (Intel 82093AA, as KVM and QEMU
// model it): 24 input pins, each with a redirection entry that turns a
// level or an edge on the pin into an interrupt message to local APICs.
//
// It is a plain state machine: Read and Write serve its MMIO window
// (IOREGSEL at 0x00, IOWIN at 0x10, the EOI register at 0x40 of the
// version 0x20 part KVM models), SetPin drives an input, and EOI is a
// local APIC's end of interrupt for a level-triggered vector. Messages
// go out through the Deliver function of its Config, without the
// IOAPIC's lock held.
package ioapic

import (
	"encoding/binary"
	"sync"
)

// Base is the IOAPIC's MMIO window on a PC, and Size its length.
const (
	Base = 0xFEC00000
	Size = 0x1000
)

// Pins is the number of inputs (redirection entries).
const Pins = 24

// Register indexes behind IOREGSEL (82093AA section 3.1).
const (
	regID      = 0x00
	regVersion = 0x01
	regArb     = 0x02
	regRedir   = 0x10 // two per pin: low dword, then high
	version    = 0x20 // with the EOI register (as KVM's)
)

// MMIO offsets.
const (
	offSelect = 0x00
	offWindow = 0x10
	offEOI    = 0x40
)

// Redirection entry fields (82093AA section 3.2.4).
const (
	entVector     = 0xFF
	entMode       = 7 << 8
	entLogical    = 1 << 11
	entLowActive  = 1 << 13
	entRemoteIRR  = 1 << 14 // read-only
	entLevel      = 1 << 15
	entMasked     = 1 << 16
	entWritable   = entVector | entMode | entLogical | entLowActive | entLevel | entMasked
	entDestShift  = 56
	resetEntry    = entMasked
	idShift       = 24
	idMask        = 0xF << idShift
	writableInReg = idMask
)

// Message is an interrupt message to local APICs.
type Message struct {
	Dest    uint8 // APIC ID (physical) or logical destination
	Logical bool
	Mode    uint8 // 0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT
	Vector  uint8
	Level   bool // level-triggered: the target's EOI ends it (EOI)
	Pin     int
}

// Config connects the IOAPIC.
type Config struct {
	// Deliver sends a message to the local APICs; it is called without
	// the IOAPIC's lock, from whichever goroutine drove the pin or wrote
	// the register.
	Deliver func(Message)
}

// IOAPIC is the device. Its methods are safe for concurrent use.
type IOAPIC struct {
	deliver func(Message)

	mu     sync.Mutex
	sel    uint8
	id     uint32
	redir  [Pins]uint64
	level  [Pins]bool // the pins' input levels, active high
	sent   uint64     // messages delivered
	ignore uint64     // accesses that were not a register's
}

// New makes an IOAPIC at reset: every entry masked.
func New(cfg Config) *IOAPIC {
	a := &IOAPIC{deliver: cfg.Deliver}
	for i := range a.redir {
		a.redir[i] = resetEntry
	}
	return a
}

// Read serves a read at offset in the MMIO window: IOREGSEL and IOWIN
// are 32-bit registers; other offsets read zero.
func (a *IOAPIC) Read(offset uint64, data []byte) {
	a.mu.Lock()
	var v uint32
	switch offset &^ 3 {
	case offSelect:
		v = uint32(a.sel)
	case offWindow:
		v = a.readLocked()
	default:
		a.ignore++
	}
	a.mu.Unlock()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	for i := range data {
		data[i] = b[(int(offset&3)+i)&3]
	}
}

func (a *IOAPIC) readLocked() uint32 {
	switch r := a.sel; {
	case r == regID:
		return a.id
	case r == regVersion:
		return (Pins-1)<<16 | version
	case r == regArb:
		return a.id
	case r >= regRedir && r < regRedir+2*Pins:
		e := a.redir[(r-regRedir)/2]
		if r&1 == 0 {
			return uint32(e)
		}
		return uint32(e >> 32)
	}
	return 0
}

// Write serves a write: a dword to IOREGSEL, IOWIN or the EOI register
// (other sizes and offsets are ignored, as the part ignores them).
func (a *IOAPIC) Write(offset uint64, data []byte) {
	if len(data) != 4 || offset&3 != 0 {
		a.mu.Lock()
		a.ignore++
		a.mu.Unlock()
		return
	}
	v := binary.LittleEndian.Uint32(data)
	a.mu.Lock()
	var out []Message
	switch offset {
	case offSelect:
		a.sel = uint8(v)
	case offWindow:
		out = a.writeLocked(v)
	case offEOI:
		out = a.eoiLocked(uint8(v))
	default:
		a.ignore++
	}
	a.mu.Unlock()
	a.send(out)
}

func (a *IOAPIC) writeLocked(v uint32) []Message {
	switch r := a.sel; {
	case r == regID:
		a.id = v & writableInReg
	case r >= regRedir && r < regRedir+2*Pins:
		pin := int(r-regRedir) / 2
		e := a.redir[pin]
		if r&1 == 0 {
			e = e&^uint64(entWritable) | uint64(v)&entWritable
		} else {
			e = e&0xFFFFFFFF | uint64(v)<<32
		}
		if e&entLevel == 0 {
			e &^= entRemoteIRR // an edge entry has none
		}
		a.redir[pin] = e
		// Unmasking a level entry whose pin is asserted sends at once.
		return a.serviceLocked(pin, nil)
	}
	return nil
}

// SetPin drives input pin to level (active high, as the PC's ISA and
// PCI lines reach it here; an entry's polarity bit inverts it). An
// out-of-range pin is ignored.
func (a *IOAPIC) SetPin(pin int, level bool) {
	if pin < 0 || pin >= Pins {
		return
	}
	a.mu.Lock()
	was := a.asserted(pin)
	a.level[pin] = level
	var out []Message
	if e := a.redir[pin]; e&entLevel != 0 {
		out = a.serviceLocked(pin, nil)
	} else if !was && a.asserted(pin) && e&entMasked == 0 {
		out = append(out, a.messageLocked(pin))
	}
	a.mu.Unlock()
	a.send(out)
}

// asserted is the pin's input as its entry's polarity reads it.
func (a *IOAPIC) asserted(pin int) bool {
	return a.level[pin] != (a.redir[pin]&entLowActive != 0)
}

// serviceLocked sends pin's level-triggered interrupt if it is
// asserted, unmasked and not already waiting for its EOI.
func (a *IOAPIC) serviceLocked(pin int, out []Message) []Message {
	e := a.redir[pin]
	if e&entLevel == 0 || e&entMasked != 0 || e&entRemoteIRR != 0 || !a.asserted(pin) {
		return out
	}
	a.redir[pin] |= entRemoteIRR
	return append(out, a.messageLocked(pin))
}

func (a *IOAPIC) messageLocked(pin int) Message {
	e := a.redir[pin]
	a.sent++
	return Message{Dest: uint8(e >> entDestShift), Logical: e&entLogical != 0, Mode: uint8(e & entMode >> 8),
		Vector: uint8(e & entVector), Level: e&entLevel != 0, Pin: pin}
}

// EOI is a local APIC's end of interrupt for a level-triggered vector:
// entries with that vector leave their remote IRR state, and those whose
// pin is still asserted send again.
func (a *IOAPIC) EOI(vector uint8) {
	a.mu.Lock()
	out := a.eoiLocked(vector)
	a.mu.Unlock()
	a.send(out)
}

func (a *IOAPIC) eoiLocked(vector uint8) []Message {
	var out []Message
	for pin, e := range a.redir {
		if e&entRemoteIRR != 0 && uint8(e&entVector) == vector {
			a.redir[pin] &^= entRemoteIRR
			out = a.serviceLocked(pin, out)
		}
	}
	return out
}

func (a *IOAPIC) send(out []Message) {
	if a.deliver == nil {
		return
	}
	for _, m := range out {
		a.deliver(m)
	}
}

// Stats counts the IOAPIC's work.
type Stats struct {
	Messages uint64 // interrupt messages sent
	Ignored  uint64 // accesses to no register
}

// Stats returns the counters.
func (a *IOAPIC) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Stats{Messages: a.sent, Ignored: a.ignore}
}
