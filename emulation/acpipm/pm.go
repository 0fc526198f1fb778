// Package acpipm models the power-management I/O block of the PIIX4's
// ACPI function: PM1 status, enable and control, the 24-bit ACPI PM timer,
// and the fixed-feature power button. A write of SLP_EN with sleep type 0
// to PM1 control is a soft power-off (S5 in the _S5 package SeaBIOS and
// QEMU describe for PIIX4), reported through a callback.
//
// The power button is the ACPI specification's fixed-hardware one (not a
// control-method button in the DSDT): PowerButton sets PWRBTN_STS
// (PM1 status bit 8). While that bit, its enable PWRBTN_EN (PM1 enable
// bit 8) and SCI_EN (PM1 control bit 0) are all set, the block drives its
// SCI output high; the guest's handler lowers it by writing 1 to
// PWRBTN_STS. The SCI is a level: the owner wires it to the interrupt
// controller (IRQ 9 on a PIIX4 PC, active high, level triggered).
//
// Register block (PIIX4 datasheet, section 11.7 "Power Management I/O
// Space"), offsets from the PM base:
//
//	0x00 PM1STS  u16  status, write 1 to clear: PWRBTN_STS bit 8
//	0x02 PM1EN   u16  enables: PWRBTN_EN bit 8
//	0x04 PM1CNT  u16  control: SCI_EN bit 0, SLP_TYP bits 10-12, SLP_EN bit 13
//	0x08 PMTMR   u32  free-running 3.579545 MHz counter, 24 bits
//
// Left out for now: general-purpose events, the PM1 timer overflow event
// and its SCI, the other fixed events (global lock, sleep button, RTC
// alarm; their status bits never set), the SMI the chip raises instead of
// an SCI while SCI_EN is clear, the power-button override (four seconds
// held), and sleep states other than soft-off.
package acpipm

import (
	"encoding/binary"
	"sync"
	"time"
)

// Size is the I/O space the block decodes.
const Size = 0x40

// TimerHz is the ACPI PM timer frequency.
const TimerHz = 3579545

const (
	regStatus  = 0x00
	regEnable  = 0x02
	regControl = 0x04
	regTimer   = 0x08

	slpEn      = 1 << 13
	slpTypMask = 7 << 10
	sciEn      = 1

	// pwrBtn is PWRBTN_STS in PM1 status and PWRBTN_EN in PM1 enable.
	pwrBtn = 1 << 8

	// sciEvents are the status bits that can raise the SCI (with their
	// enables); the block sets no others.
	sciEvents = pwrBtn
)

// PM is the PM1 block.
type PM struct {
	start    time.Time
	powerOff func()
	sci      func(level bool)

	mu       sync.Mutex
	status   uint16 // guarded by mu
	enable   uint16 // guarded by mu
	control  uint16 // guarded by mu
	sciLevel bool   // level last driven through sci; guarded by mu
}

// New makes a PM block whose timer starts now. powerOff is called when the
// guest requests soft-off (without the block's lock held). sci drives the
// SCI line; it is called only when the level changes, with the block's
// lock held so that levels reach the interrupt controller in the order
// they were decided, and so must not call back into the block. Either may
// be nil.
func New(powerOff func(), sci func(level bool)) *PM {
	return &PM{start: time.Now(), powerOff: powerOff, sci: sci}
}

// PowerButton presses the power button: it sets PWRBTN_STS, raising the
// SCI if the guest enabled it. It reports whether the guest listens, that
// is whether PWRBTN_EN and SCI_EN are both set; the status bit is set
// either way, as the hardware would.
func (p *PM) PowerButton() (listening bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status |= pwrBtn
	p.updateSCILocked()
	return p.enable&pwrBtn != 0 && p.control&sciEn != 0
}

// SCI reports the level the block drives on its SCI line.
func (p *PM) SCI() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sciLevel
}

// updateSCILocked recomputes the SCI level and drives it if it changed.
func (p *PM) updateSCILocked() {
	level := p.control&sciEn != 0 && p.status&p.enable&sciEvents != 0
	if level == p.sciLevel {
		return
	}
	p.sciLevel = level
	if p.sci != nil {
		p.sci(level)
	}
}

// Read implements bus.Device.
func (p *PM) Read(off uint64, data []byte) {
	var word [4]byte
	base := off &^ 3
	p.mu.Lock()
	switch base {
	case regStatus:
		binary.LittleEndian.PutUint16(word[0:], p.status)
		binary.LittleEndian.PutUint16(word[2:], p.enable)
	case regControl:
		binary.LittleEndian.PutUint16(word[0:], p.control)
	case regTimer:
		ticks := uint64(time.Since(p.start)) * TimerHz / uint64(time.Second)
		binary.LittleEndian.PutUint32(word[:], uint32(ticks)&0xFFFFFF)
	}
	p.mu.Unlock()
	for i := range data {
		if o := off - base + uint64(i); o < 4 {
			data[i] = word[o]
		} else {
			data[i] = 0
		}
	}
}

// Write implements bus.Device.
func (p *PM) Write(off uint64, data []byte) {
	for i, b := range data {
		p.writeByte(off+uint64(i), b)
	}
}

func (p *PM) writeByte(off uint64, b byte) {
	p.mu.Lock()
	var off16 = func(v *uint16, hi bool, b byte) {
		if hi {
			*v = *v&0x00FF | uint16(b)<<8
		} else {
			*v = *v&0xFF00 | uint16(b)
		}
	}
	powerOff := false
	switch off {
	case regStatus, regStatus + 1: // write 1 to clear
		shift := 8 * (off - regStatus)
		p.status &^= uint16(b) << shift
	case regEnable, regEnable + 1:
		off16(&p.enable, off == regEnable+1, b)
	case regControl, regControl + 1:
		off16(&p.control, off == regControl+1, b)
		if p.control&slpEn != 0 {
			// SLP_EN is write-only: it triggers the transition and reads 0.
			p.control &^= slpEn
			powerOff = (p.control&slpTypMask)>>10 == 0
		}
	}
	p.updateSCILocked()
	p.mu.Unlock()
	if powerOff && p.powerOff != nil {
		p.powerOff()
	}
}
