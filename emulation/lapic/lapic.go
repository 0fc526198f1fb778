// Package lapic is a processor's local APIC as a PC's firmware and a
// platform without an in-kernel one need it (Intel SDM volume 3, chapter
// 10; KVM's and QEMU's models for what the SDM leaves open): its
// registers, the interrupt request, in-service and trigger-mode bits
// with the task priority, end of interrupt, the interrupt command
// register that sends IPIs (INIT and start-up among them), the local
// vector table with LINT0 as the 8259A's way in, and the timer, on the
// host clock.
//
// It is a plain state machine. Read and Write serve its 4 KiB MMIO page;
// Accept takes a message from the bus; Pending and Acknowledge are the
// processor's side. IPIs, EOIs of level-triggered vectors and changes of
// what is pending go out through the functions of its Config, called
// without the APIC's lock.
package lapic

import (
	"encoding/binary"
	"sync"
	"time"
)

// Base is where a PC's local APICs decode, and Size their page.
const (
	Base = 0xFEE00000
	Size = 0x1000
)

// Delivery modes (ICR, LVT and IOAPIC entries).
const (
	ModeFixed   = 0
	ModeLowest  = 1
	ModeSMI     = 2
	ModeNMI     = 4
	ModeINIT    = 5
	ModeStartup = 6
	ModeExtINT  = 7
)

// Destination shorthands of the ICR.
const (
	ToDest        = 0
	ToSelf        = 1
	ToAll         = 2
	ToAllButSelf  = 3
	shorthandBits = 18
)

// Register offsets (SDM table 10-1).
const (
	regID       = 0x020
	regVersion  = 0x030
	regTPR      = 0x080
	regAPR      = 0x090
	regPPR      = 0x0A0
	regEOI      = 0x0B0
	regLDR      = 0x0D0
	regDFR      = 0x0E0
	regSVR      = 0x0F0
	regISR      = 0x100
	regTMR      = 0x180
	regIRR      = 0x200
	regESR      = 0x280
	regICRLow   = 0x300
	regICRHigh  = 0x310
	regLVT      = 0x320 // timer, thermal, performance, LINT0, LINT1, error
	regInitial  = 0x380
	regCurrent  = 0x390
	regDivide   = 0x3E0
	lvtTimer    = 0
	lvtLINT0    = 3
	lvtCount    = 6
	version     = 0x14 | (lvtCount-1)<<16 // an integrated APIC
	svrEnabled  = 1 << 8
	lvtMasked   = 1 << 16
	lvtPeriodic = 1 << 17
	icrLevel    = 1 << 14
	icrTrigger  = 1 << 15
	esrBadVec   = 1 << 6 // received illegal vector
	esrSendBad  = 1 << 5 // send illegal vector
	minPeriod   = 100 * time.Microsecond
	busHz       = 1_000_000_000 // the timer's clock before the divider (KVM's)
)

// IPI is an interrupt command the APIC sends (a write of the ICR's low
// dword).
type IPI struct {
	From      uint8 // the sender's APIC ID
	Dest      uint8 // APIC ID, or logical destination
	Logical   bool
	Shorthand uint8
	Mode      uint8
	Vector    uint8
	Assert    bool // level: assert (INIT de-assert has it clear)
	Level     bool // trigger mode: level
}

// Config connects the APIC.
type Config struct {
	ID  uint8
	BSP bool // the bootstrap processor's: LINT0 is ExtINT from reset, as KVM and QEMU set it
	// SendIPI sends an interrupt command to the bus.
	SendIPI func(IPI)
	// EOI tells the IOAPIC a level-triggered vector ended.
	EOI func(vector uint8)
	// Changed says what Pending answers may have changed (an interrupt
	// arrived): the processor looks again.
	Changed func()
	Now     func() time.Time
}

// APIC is one local APIC. Its methods are safe for concurrent use.
type APIC struct {
	cfg Config

	mu      sync.Mutex
	tpr     uint32
	ldr     uint32
	dfr     uint32
	svr     uint32
	esr     uint32
	icrLow  uint32
	icrHigh uint32
	lvt     [lvtCount]uint32
	irr     [8]uint32
	isr     [8]uint32
	tmr     [8]uint32
	initial uint32
	divide  uint32
	start   time.Time // when the timer was loaded
	timer   *time.Timer
	closed  bool
}

// New makes an APIC at reset.
func New(cfg Config) *APIC {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &APIC{cfg: cfg}
	a.reset()
	return a
}

// ID is the APIC's ID.
func (a *APIC) ID() uint8 { return a.cfg.ID }

// Reset returns the APIC to its reset state (an INIT), keeping its ID.
func (a *APIC) Reset() {
	a.mu.Lock()
	a.reset()
	a.mu.Unlock()
}

func (a *APIC) reset() {
	a.stopTimerLocked()
	a.tpr, a.ldr, a.dfr, a.svr, a.esr, a.icrLow, a.icrHigh = 0, 0, 0xFFFFFFFF, 0xFF, 0, 0, 0
	for i := range a.lvt {
		a.lvt[i] = lvtMasked
	}
	if a.cfg.BSP {
		a.lvt[lvtLINT0] = ModeExtINT << 8
	}
	a.irr, a.isr, a.tmr = [8]uint32{}, [8]uint32{}, [8]uint32{}
	a.initial, a.divide = 0, 0
}

// Close stops the timer.
func (a *APIC) Close() {
	a.mu.Lock()
	a.closed = true
	a.stopTimerLocked()
	a.mu.Unlock()
}

// Read serves a read at offset in the APIC's page. Registers are 32 bits
// at 16-byte strides; narrower reads see the dword's bytes, reads of no
// register see zero.
func (a *APIC) Read(offset uint64, data []byte) {
	a.mu.Lock()
	v := a.readLocked(offset &^ 0xF)
	a.mu.Unlock()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	for i := range data {
		if j := int(offset&0xF) + i; j < 4 {
			data[i] = b[j]
		} else {
			data[i] = 0
		}
	}
}

func (a *APIC) readLocked(reg uint64) uint32 {
	switch {
	case reg == regID:
		return uint32(a.cfg.ID) << 24
	case reg == regVersion:
		return version
	case reg == regTPR:
		return a.tpr
	case reg == regAPR:
		return 0
	case reg == regPPR:
		return a.pprLocked()
	case reg == regLDR:
		return a.ldr
	case reg == regDFR:
		return a.dfr
	case reg == regSVR:
		return a.svr
	case reg >= regISR && reg < regISR+0x80:
		return a.isr[(reg-regISR)>>4]
	case reg >= regTMR && reg < regTMR+0x80:
		return a.tmr[(reg-regTMR)>>4]
	case reg >= regIRR && reg < regIRR+0x80:
		return a.irr[(reg-regIRR)>>4]
	case reg == regESR:
		return a.esr
	case reg == regICRLow:
		return a.icrLow
	case reg == regICRHigh:
		return a.icrHigh
	case reg >= regLVT && reg < regLVT+lvtCount*0x10:
		return a.lvt[(reg-regLVT)>>4]
	case reg == regInitial:
		return a.initial
	case reg == regCurrent:
		return a.currentLocked(a.cfg.Now())
	case reg == regDivide:
		return a.divide
	}
	return 0
}

// Write serves a write: a dword at a register's offset (narrower or
// misaligned writes are dropped, as the SDM leaves them undefined).
func (a *APIC) Write(offset uint64, data []byte) {
	if len(data) != 4 || offset&0xF != 0 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	a.mu.Lock()
	var ipi *IPI
	eoi := -1
	changed := false
	switch reg := offset; {
	case reg == regTPR:
		a.tpr = v & 0xFF
		changed = true
	case reg == regEOI:
		eoi = a.eoiLocked()
		changed = true
	case reg == regLDR:
		a.ldr = v & 0xFF000000
	case reg == regDFR:
		a.dfr = v | 0x0FFFFFFF
	case reg == regSVR:
		a.svr = v & (0xFF | svrEnabled | 1<<12)
		// Software disable sets every LVT mask and keeps them set
		// (SDM 10.4.7.2).
		if v&svrEnabled == 0 {
			for i := range a.lvt {
				a.lvt[i] |= lvtMasked
			}
		}
	case reg == regESR:
		a.esr = 0 // a write latches and clears (the latch is immediate here)
	case reg == regICRLow:
		a.icrLow = v &^ (1 << 12) // delivery status: always idle
		ipi = a.ipiLocked()
	case reg == regICRHigh:
		a.icrHigh = v & 0xFF000000
	case reg >= regLVT && reg < regLVT+lvtCount*0x10:
		i := (reg - regLVT) >> 4
		mask := uint32(0x1F7FF) // vector, mode, polarity, trigger, mask
		if i == lvtTimer {
			mask = 0x300FF
		}
		a.lvt[i] = v & mask
		if a.svr&svrEnabled == 0 {
			a.lvt[i] |= lvtMasked
		}
		if i == lvtTimer {
			a.armLocked()
		}
	case reg == regInitial:
		a.initial = v
		a.start = a.cfg.Now()
		a.armLocked()
	case reg == regDivide:
		a.divide = v & 0xB
		a.start = a.cfg.Now()
		a.armLocked()
	}
	a.mu.Unlock()
	if ipi != nil && a.cfg.SendIPI != nil {
		a.cfg.SendIPI(*ipi)
	}
	if eoi >= 0 && a.cfg.EOI != nil {
		a.cfg.EOI(uint8(eoi))
	}
	if changed {
		a.changed()
	}
}

func (a *APIC) changed() {
	if a.cfg.Changed != nil {
		a.cfg.Changed()
	}
}

// ipiLocked reads the ICR into an IPI; a fixed IPI with a vector below 16
// is not sent (send illegal vector).
func (a *APIC) ipiLocked() *IPI {
	lo := a.icrLow
	p := &IPI{From: a.cfg.ID, Dest: uint8(a.icrHigh >> 24), Logical: lo&(1<<11) != 0,
		Shorthand: uint8(lo >> shorthandBits & 3), Mode: uint8(lo >> 8 & 7), Vector: uint8(lo),
		Assert: lo&icrLevel != 0, Level: lo&icrTrigger != 0}
	if (p.Mode == ModeFixed || p.Mode == ModeLowest) && p.Vector < 16 {
		a.esr |= esrSendBad
		return nil
	}
	return p
}

// eoiLocked ends the highest in-service vector; it returns the vector if
// it was level-triggered (for the IOAPIC), else -1.
func (a *APIC) eoiLocked() int {
	v := highest(&a.isr)
	if v < 0 {
		return -1
	}
	clr(&a.isr, v)
	if test(&a.tmr, v) {
		return v
	}
	return -1
}

// pprLocked is the processor priority (SDM 10.8.3.1).
func (a *APIC) pprLocked() uint32 {
	isrv := uint32(max(highest(&a.isr), 0))
	if a.tpr&0xF0 >= isrv&0xF0 {
		return a.tpr
	}
	return isrv & 0xF0
}

// Accept takes an interrupt message: the vector becomes requested
// (level: trigger-mode bit set, so its EOI reaches the IOAPIC). A
// software-disabled APIC takes none; a vector below 16 is illegal.
func (a *APIC) Accept(vector uint8, level bool) {
	a.mu.Lock()
	ok := a.acceptLocked(vector, level)
	a.mu.Unlock()
	if ok {
		a.changed()
	}
}

func (a *APIC) acceptLocked(vector uint8, level bool) bool {
	if vector < 16 {
		a.esr |= esrBadVec
		return false
	}
	if a.svr&svrEnabled == 0 {
		return false
	}
	set(&a.irr, int(vector))
	if level {
		set(&a.tmr, int(vector))
	} else {
		clr(&a.tmr, int(vector))
	}
	return true
}

// Pending returns the vector the processor would take now, if any: the
// highest requested whose priority class is above the processor's.
func (a *APIC) Pending() (uint8, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pendingLocked()
}

func (a *APIC) pendingLocked() (uint8, bool) {
	v := highest(&a.irr)
	if v < 0 || uint32(v)&0xF0 <= a.pprLocked()&0xF0 {
		return 0, false
	}
	return uint8(v), true
}

// Acknowledge is the processor taking the pending vector: it moves from
// requested to in service.
func (a *APIC) Acknowledge() (uint8, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.pendingLocked()
	if ok {
		clr(&a.irr, int(v))
		set(&a.isr, int(v))
	}
	return v, ok
}

// AcceptsPIC reports whether the 8259A's output reaches the processor:
// LINT0 unmasked in ExtINT mode (virtual wire, the BSP's from reset).
func (a *APIC) AcceptsPIC() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.lvt[lvtLINT0]
	return l&lvtMasked == 0 && l>>8&7 == ModeExtINT
}

// MatchesLogical reports whether a logical destination names this APIC
// (flat model: a bit of the LDR's top byte; cluster model: the cluster
// in the top nibble and a bit of the low one).
func (a *APIC) MatchesLogical(dest uint8) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := uint8(a.ldr >> 24)
	if a.dfr>>28 == 0xF { // flat
		return dest&id != 0
	}
	return dest>>4 == id>>4 && dest&id&0xF != 0
}

// The timer.

func (a *APIC) divisor() uint64 {
	v := a.divide&3 | a.divide&8>>1
	return 1 << ((v + 1) & 7)
}

// period is one count of the timer's initial value, in time.
func (a *APIC) periodLocked() time.Duration {
	return time.Duration(uint64(a.initial) * a.divisor() * (1e9 / busHz))
}

func (a *APIC) currentLocked(now time.Time) uint32 {
	if a.initial == 0 {
		return 0
	}
	ticks := uint64(now.Sub(a.start)) / (a.divisor() * (1e9 / busHz))
	if a.lvt[lvtTimer]&lvtPeriodic != 0 {
		return a.initial - uint32(ticks%uint64(a.initial))
	}
	if ticks >= uint64(a.initial) {
		return 0
	}
	return a.initial - uint32(ticks)
}

func (a *APIC) stopTimerLocked() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}

// armLocked sets the host timer for the next expiry, if the timer runs.
func (a *APIC) armLocked() {
	a.stopTimerLocked()
	if a.closed || a.initial == 0 {
		return
	}
	now := a.cfg.Now()
	period := a.periodLocked()
	at := a.start.Add(period)
	if a.lvt[lvtTimer]&lvtPeriodic != 0 {
		for !at.After(now) {
			at = at.Add(max(period, minPeriod))
		}
	} else if !at.After(now) {
		return // a one-shot count already ran out
	}
	a.timer = time.AfterFunc(max(at.Sub(now), 0), a.expire)
}

// expire is the timer running out: the LVT's vector, unless masked.
func (a *APIC) expire() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	ok := false
	if l := a.lvt[lvtTimer]; l&lvtMasked == 0 {
		ok = a.acceptLocked(uint8(l), false)
	}
	if a.lvt[lvtTimer]&lvtPeriodic != 0 {
		a.armLocked()
	} else {
		a.timer = nil
	}
	a.mu.Unlock()
	if ok {
		a.changed()
	}
}

// 256-bit vector sets.

func set(b *[8]uint32, v int)       { b[v>>5] |= 1 << (v & 31) }
func clr(b *[8]uint32, v int)       { b[v>>5] &^= 1 << (v & 31) }
func test(b *[8]uint32, v int) bool { return b[v>>5]&(1<<(v&31)) != 0 }

// highest is the highest vector in b, or -1.
func highest(b *[8]uint32) int {
	for i := 7; i >= 0; i-- {
		if w := b[i]; w != 0 {
			n := 31
			for w&(1<<n) == 0 {
				n--
			}
			return i*32 + n
		}
	}
	return -1
}
