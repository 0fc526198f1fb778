// Package acpipm models the power-management I/O block of the PIIX4's
// ACPI function: PM1 status, enable and control, and the 24-bit ACPI PM
// timer. A write of SLP_EN with sleep type 0 to PM1 control is a soft
// power-off (S5 in the _S5 package SeaBIOS and QEMU describe for PIIX4),
// reported through a callback.
//
// Register block (PIIX4 datasheet, section 11.7 "Power Management I/O
// Space"), offsets from the PM base:
//
//	0x00 PM1STS  u16  status, write 1 to clear
//	0x02 PM1EN   u16  enables
//	0x04 PM1CNT  u16  control: SCI_EN bit 0, SLP_TYP bits 10-12, SLP_EN bit 13
//	0x08 PMTMR   u32  free-running 3.579545 MHz counter, 24 bits
//
// Left out for now: general-purpose events, the PM1 timer overflow event
// and its SCI, and sleep states other than soft-off.
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
)

// PM is the PM1 block.
type PM struct {
	start    time.Time
	powerOff func()

	mu      sync.Mutex
	status  uint16 // guarded by mu
	enable  uint16 // guarded by mu
	control uint16 // guarded by mu
}

// New makes a PM block whose timer starts now; powerOff is called when the
// guest requests soft-off.
func New(powerOff func()) *PM { return &PM{start: time.Now(), powerOff: powerOff} }

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
	p.mu.Unlock()
	if powerOff && p.powerOff != nil {
		p.powerOff()
	}
}
