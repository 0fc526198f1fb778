// Package cmos models the Motorola MC146818A real-time clock and its
// battery-backed RAM as they appear on a PC/AT: an index port (0x70) and a
// data port (0x71) in front of 128 bytes — the clock, calendar and alarm
// bytes, the four control registers A–D and 114 bytes of NVRAM, of which
// the PC/AT firmware convention gives meaning to a few (memory sizes,
// equipment, the checksum). Section numbers below refer to the MC146818A
// datasheet (Motorola, rev. 1984); the NVRAM map is the IBM PC/AT
// Technical Reference's.
//
// # Registers
//
// The device decodes two ports; offset 0 is the index port, offset 1 the
// data port. Each byte of a wider access goes to the next offset; bytes
// past offset 1 read as 0xFF and their writes are dropped.
//
//	index port  bits 0-6 select the register; bit 7 disables NMI on a PC
//	            (recorded, see NMIDisabled). Reads of the index port return
//	            0xFF, as on most chipsets, where it is write-only.
//	0x00 0x02 0x04  seconds, minutes, hours (12-hour mode: bit 7 is PM)
//	0x01 0x03 0x05  seconds, minutes, hours alarm; 0xC0-0xFF is "don't care"
//	0x06 0x07 0x08 0x09  day of week (1 = Sunday), day of month, month, year
//	0x0A  register A: UIP (bit 7, read-only), DV2-0 (bits 4-6), RS3-0
//	0x0B  register B: SET PIE AIE UIE SQWE DM 24/12 DSE (bits 7 to 0)
//	0x0C  register C: IRQF PF AF UF (bits 7 to 4), read-only, cleared by a read
//	0x0D  register D: VRT (bit 7), always 1: the battery is good
//	0x0E-0x7F  NVRAM; 0x32 is the century, which on a PC/AT belongs to the clock
//
// # The clock
//
// The clock has no state of its own: the guest's time is the wall-clock
// reading of Config.Now (its date and time of day in the location it
// carries) plus a whole number of seconds the guest sets by writing the
// time registers. Seconds therefore tick over with the host's. Writes with
// SET clear change the running clock at once; with SET set (§ "Register B")
// updates stop, reads return the latched values, writes change the latch,
// and the clock restarts from it when SET is cleared. Values are encoded
// and decoded in the mode register B selects at the time (DM: binary or
// BCD; 24/12). A written value out of range is normalized as time.Date
// does (month 13 is January of the next year); the day of week is derived
// from the date whenever the clock runs, so a guest-written day of week is
// only kept while SET is set.
//
// UIP (§ "Register A") reads 1 during the last 2228 µs of every second —
// the 244 µs warning plus the 1984 µs update cycle at a 32.768 kHz time
// base — and the time registers change as it falls, so a guest that waits
// for UIP to fall then has nearly a second to read a consistent time.
//
// # Interrupts
//
// Register C's flags are computed lazily: every guest access and every
// Tick first runs the update cycles that have passed, setting UF once per
// elapsed second and AF when the current time matches the alarm. IRQF and
// the IRQ 8 line are high while a flag and its enable in register B are
// both set (PF·PIE + AF·AIE + UF·UIE), and reading register C clears the
// flags. While UIE or AIE is set, a timer runs Tick at every second
// boundary so the interrupt comes without the guest polling; Close stops
// it.
//
// The periodic interrupt sets PF at the rate register A selects (with the
// 32.768 kHz time base), from a ticker that runs only while PIE is set.
// Left out: the square-wave output (SQWE stored), the
// divider (DV bits stored; the clock runs whatever they hold) and daylight
// saving (DSE stored, no adjustment). The alarm is checked only against the
// time at an update, not for every second skipped when the guest jumps the
// clock.
//
// # Locking
//
// A CMOS is called from vCPU threads (Read, Write), from the worker
// (SetByte) and from its own timer (Tick). mu guards the state. A change of
// the interrupt level is found under mu and delivered after it is released,
// under emitMu, which is taken before mu is dropped so that levels reach
// the interrupt controller in the order they changed. Lock order: mu, then
// emitMu. The IRQ callback must not call back into the same CMOS.
package cmos

import (
	"sync"
	"sync/atomic"
	"time"
)

// Size is the I/O space the device decodes (ports 0x70-0x71).
const Size = 2

// Register indices.
const (
	regSeconds      = 0x00
	regSecondsAlarm = 0x01
	regMinutes      = 0x02
	regMinutesAlarm = 0x03
	regHours        = 0x04
	regHoursAlarm   = 0x05
	regDayOfWeek    = 0x06
	regDayOfMonth   = 0x07
	regMonth        = 0x08
	regYear         = 0x09
	regA            = 0x0A
	regB            = 0x0B
	regC            = 0x0C
	regD            = 0x0D
	regCentury      = 0x32 // PC/AT convention, not part of the MC146818A
)

// PC/AT NVRAM layout (IBM PC/AT Technical Reference, "CMOS RAM Address Map").
const (
	regShutdown      = 0x0F
	regFloppy        = 0x10
	regEquipment     = 0x14
	regBaseMemLo     = 0x15 // KiB below 1 MiB
	regExtMemLo      = 0x17 // KiB above 1 MiB, as the POST found it
	regExtMem2Lo     = 0x30 // KiB above 1 MiB, as configured
	regChecksumHi    = 0x2E // sum of 0x10-0x2D, big-endian
	regChecksumLo    = 0x2F
	regMem16MLo      = 0x34 // 64 KiB units above 16 MiB (SeaBIOS, Bochs, QEMU)
	regMem4GLo       = 0x5B // 64 KiB units above 4 GiB, three bytes
	checksumFirst    = 0x10
	checksumLast     = 0x2D
	defaultEquipment = 0x06 // coprocessor (bit 1), pointing device (bit 2), EGA/VGA, no floppy
)

// Register A bits.
const (
	aUIP = 1 << 7
	// uipWindow is how long before a second boundary UIP reads 1: 244 µs
	// of warning plus the 1984 µs update cycle (§ "Update Cycle").
	uipWindow = 2228 * time.Microsecond
)

// Register B bits.
const (
	bSET  = 1 << 7
	bPIE  = 1 << 6
	bAIE  = 1 << 5
	bUIE  = 1 << 4
	bSQWE = 1 << 3
	bDM   = 1 << 2 // 1: binary, 0: BCD
	b24   = 1 << 1 // 1: 24-hour, 0: 12-hour
	bDSE  = 1 << 0
)

// Register C bits; each flag sits at the same bit as its enable in B.
const (
	cIRQF  = 1 << 7
	cPF    = 1 << 6
	cAF    = 1 << 5
	cUF    = 1 << 4
	cFlags = cPF | cAF | cUF
)

// Register D bits.
const dVRT = 1 << 7

const (
	indexMask = 0x7F
	nmiBit    = 0x80
)

// Reset values: register A with the 32.768 kHz time base and a 1024 Hz
// rate (what PC firmware programs), register B with 24-hour BCD.
const (
	resetA = 0x26
	resetB = b24
)

// Config configures a CMOS.
type Config struct {
	Memory     uint64           // guest RAM below the PCI hole, in bytes: the memory-size bytes
	HighMemory uint64           // guest RAM from 4 GiB up, in bytes: bytes 0x5B-0x5D
	Now        func() time.Time // clock source (default time.Now)
	IRQ        func(level bool) // IRQ 8 line (may be nil)
}

// Stats counts a CMOS's traffic.
type Stats struct {
	Reads      uint64 // data-port reads
	Writes     uint64 // data-port writes
	TimeSets   uint64 // times the guest changed the running clock
	Interrupts uint64 // rising edges of the IRQ line
}

// fields is a broken-down time: the clock registers decoded.
type fields struct {
	sec, min, hour  int // hour 0-23
	wday            int // 1 = Sunday
	mday, mon, year int // year in full, century included
}

// CMOS is one MC146818A with its NVRAM. Its methods are safe for
// concurrent use.
type CMOS struct {
	now func() time.Time
	irq func(level bool) // nil: the line goes nowhere

	// emitMu serializes delivery of interrupt levels; see the package comment.
	emitMu sync.Mutex

	mu sync.Mutex
	// All fields below are guarded by mu.
	index  uint8     // selected register, 0-0x7F
	nmiOff bool      // bit 7 of the last index write
	ram    [128]byte // alarm bytes, A, B, D and NVRAM; clock bytes unused
	offset int64     // guest seconds minus host wall-clock seconds
	latch  fields    // the clock while SET is set
	// lastSec is the guest second whose update cycle last ran; updates
	// between it and the current second set UF.
	lastSec int64
	flags   uint8 // register C bits 4-6
	level   bool  // interrupt level last reported through irq
	timer   *time.Timer
	armed   bool // timer is pending
	closed  bool
	// The periodic interrupt's ticker goroutine: its period, and the
	// channel that stops it (nil when none runs).
	period     time.Duration
	stopPeriod chan struct{}

	reads, writes, timeSets, interrupts atomic.Uint64
}

// New makes a CMOS with the PC/AT contents for cfg.Memory bytes of RAM,
// its clock at the time cfg.Now reports.
func New(cfg Config) *CMOS {
	c := &CMOS{now: cfg.Now, irq: cfg.IRQ}
	if c.now == nil {
		c.now = time.Now
	}
	c.ram[regA] = resetA
	c.ram[regB] = resetB
	c.ram[regD] = dVRT
	c.ram[regShutdown] = 0
	c.ram[regFloppy] = 0
	c.ram[regEquipment] = defaultEquipment
	put16(c.ram[regBaseMemLo:], 640)

	const kib, mib = 1 << 10, 1 << 20
	var ext, above16 uint64
	if cfg.Memory > mib {
		ext = min((cfg.Memory-mib)/kib, 0xFFFF)
	}
	if cfg.Memory > 16*mib {
		above16 = min((cfg.Memory-16*mib)/(64*kib), 0xFFFF)
	}
	put16(c.ram[regExtMemLo:], uint16(ext))
	put16(c.ram[regExtMem2Lo:], uint16(ext))
	put16(c.ram[regMem16MLo:], uint16(above16))
	// RAM from 4 GiB up, in 64 KiB units, three bytes (as QEMU's PC
	// reports it and SeaBIOS reads it without fw_cfg's e820 map).
	above4 := min(cfg.HighMemory/(64*kib), 0xFFFFFF)
	c.ram[regMem4GLo], c.ram[regMem4GLo+1], c.ram[regMem4GLo+2] = byte(above4), byte(above4>>8), byte(above4>>16)
	c.checksumLocked()
	c.lastSec = c.guestSecLocked(c.now())
	return c
}

func put16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }

// SetByte sets NVRAM byte index (0x0E-0x7F; others are ignored, as are
// the clock's century at 0x32) and, for a byte under the AT checksum
// (0x10-0x2D), recomputes the checksum.
func (c *CMOS) SetByte(index uint8, v uint8) {
	if index < regD+1 || index > indexMask || index == regCentury {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ram[index] = v
	if index >= checksumFirst && index <= checksumLast {
		c.checksumLocked()
	}
}

// checksumLocked stores the PC/AT checksum: the 16-bit sum of bytes
// 0x10-0x2D, high byte at 0x2E.
func (c *CMOS) checksumLocked() {
	var sum uint16
	for _, b := range c.ram[checksumFirst : checksumLast+1] {
		sum += uint16(b)
	}
	c.ram[regChecksumHi], c.ram[regChecksumLo] = byte(sum>>8), byte(sum)
}

// NMIDisabled reports bit 7 of the last index-port write.
func (c *CMOS) NMIDisabled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nmiOff
}

// Stats returns the traffic counters.
func (c *CMOS) Stats() Stats {
	return Stats{
		Reads:      c.reads.Load(),
		Writes:     c.writes.Load(),
		TimeSets:   c.timeSets.Load(),
		Interrupts: c.interrupts.Load(),
	}
}

// Close stops the update timer. The device still answers the guest.
func (c *CMOS) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.armed = false
	c.periodicLocked()
}

// periodRate is the periodic interrupt's period for register A's rate
// bits with the 32.768 kHz time base (MC146818A table 4): 0 is off, 1 and
// 2 give 256 and 128 Hz, 3..15 give 65536 >> rate Hz (8192 Hz .. 2 Hz).
func periodRate(rate uint8) time.Duration {
	switch rate {
	case 0:
		return 0
	case 1:
		return time.Second / 256
	case 2:
		return time.Second / 128
	}
	return time.Second / time.Duration(65536>>rate)
}

// periodicLocked starts, changes or stops the periodic interrupt's ticker
// to match PIE, the divider and the rate bits. The ticker runs only while
// the guest has enabled the interrupt, at most at 8192 Hz.
func (c *CMOS) periodicLocked() {
	var want time.Duration
	if !c.closed && c.ram[regB]&bPIE != 0 && (c.ram[regA]>>4)&7 == 2 {
		want = periodRate(c.ram[regA] & 0x0F)
	}
	if want == c.period {
		return
	}
	if c.stopPeriod != nil {
		close(c.stopPeriod)
		c.stopPeriod = nil
	}
	c.period = want
	if want == 0 {
		return
	}
	stop := make(chan struct{})
	c.stopPeriod = stop
	go func() {
		t := time.NewTicker(want)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c.mu.Lock()
				if c.stopPeriod != stop { // stopped while this tick was in flight
					c.mu.Unlock()
					return
				}
				c.flags |= cPF
				c.unlockAndEmit()
			case <-stop:
				return
			}
		}
	}()
}

// Tick runs the update cycles that have passed by Config.Now and delivers
// the resulting interrupt level. The device's own timer calls it at each
// second boundary while UIE or AIE is set; an owner may call it too.
func (c *CMOS) Tick() {
	c.mu.Lock()
	c.armed = false
	c.updateLocked(c.now())
	c.armLocked()
	c.unlockAndEmit()
}

// Read performs a guest read at offset from port 0x70.
func (c *CMOS) Read(offset uint64, data []byte) {
	c.mu.Lock()
	for i := range data {
		switch offset + uint64(i) {
		case 1:
			c.reads.Add(1)
			data[i] = c.readLocked()
		default: // the index port is write-only; past 0x71 nothing decodes
			data[i] = 0xFF
		}
	}
	c.unlockAndEmit()
}

// Write performs a guest write at offset from port 0x70.
func (c *CMOS) Write(offset uint64, data []byte) {
	c.mu.Lock()
	for i, v := range data {
		switch offset + uint64(i) {
		case 0:
			c.index, c.nmiOff = v&indexMask, v&nmiBit != 0
		case 1:
			c.writes.Add(1)
			c.writeLocked(v)
		}
	}
	c.unlockAndEmit()
}

// unlockAndEmit releases mu and reports a change of the interrupt level.
func (c *CMOS) unlockAndEmit() {
	level := c.flags&c.ram[regB]&cFlags != 0
	if level == c.level {
		c.mu.Unlock()
		return
	}
	c.level = level
	if level {
		c.interrupts.Add(1)
	}
	c.emitMu.Lock()
	c.mu.Unlock()
	defer c.emitMu.Unlock()
	if c.irq != nil {
		c.irq(level)
	}
}

func (c *CMOS) readLocked() uint8 {
	now := c.now()
	c.updateLocked(now)
	idx := c.index
	switch idx {
	case regSeconds, regMinutes, regHours, regDayOfWeek, regDayOfMonth, regMonth, regYear, regCentury:
		return c.encodeLocked(idx, c.fieldsLocked(now))
	case regA:
		a := c.ram[regA] &^ aUIP
		if c.ram[regB]&bSET == 0 && c.inUpdate(now) {
			a |= aUIP
		}
		return a
	case regC:
		v := c.flags
		if v&c.ram[regB]&cFlags != 0 {
			v |= cIRQF
		}
		c.flags = 0
		return v
	case regD:
		return dVRT
	}
	return c.ram[idx]
}

func (c *CMOS) writeLocked(v uint8) {
	now := c.now()
	c.updateLocked(now)
	idx := c.index
	switch idx {
	case regSeconds, regMinutes, regHours, regDayOfWeek, regDayOfMonth, regMonth, regYear, regCentury:
		if c.ram[regB]&bSET != 0 {
			c.decodeLocked(idx, v, &c.latch)
			return
		}
		f := c.fieldsLocked(now)
		c.decodeLocked(idx, v, &f)
		c.setClockLocked(now, f)
		c.timeSets.Add(1)
	case regA:
		c.ram[regA] = v &^ aUIP
		c.periodicLocked()
	case regB:
		old := c.ram[regB]
		if v&bSET != 0 {
			// Setting SET aborts any update and clears UIE (§ "Register B").
			v &^= bUIE
			if old&bSET == 0 {
				c.latch = c.fieldsLocked(now)
			}
		} else if old&bSET != 0 {
			c.setClockLocked(now, c.latch)
			c.timeSets.Add(1)
		}
		c.ram[regB] = v
		c.armLocked()
		c.periodicLocked()
	case regC, regD: // read-only
	default:
		c.ram[idx] = v
	}
}

// wall is now's wall-clock date and time of day, read as UTC so that
// arithmetic on it ignores time zones and daylight saving.
func wall(now time.Time) time.Time {
	y, mo, d := now.Date()
	h, mi, s := now.Clock()
	return time.Date(y, mo, d, h, mi, s, now.Nanosecond(), time.UTC)
}

// guestTimeLocked is the running clock at now.
func (c *CMOS) guestTimeLocked(now time.Time) time.Time {
	w := wall(now)
	return time.Unix(w.Unix()+c.offset, int64(w.Nanosecond())).UTC()
}

func (c *CMOS) guestSecLocked(now time.Time) int64 { return wall(now).Unix() + c.offset }

// inUpdate reports whether now falls in the UIP window before a second
// boundary. The guest's seconds tick with the host's, so the host's
// fraction of a second is the guest's.
func (c *CMOS) inUpdate(now time.Time) bool {
	return time.Duration(now.Nanosecond()) >= time.Second-uipWindow
}

// fieldsLocked is the clock as the registers show it: the latch while SET
// is set, else the running clock.
func (c *CMOS) fieldsLocked(now time.Time) fields {
	if c.ram[regB]&bSET != 0 {
		return c.latch
	}
	return fieldsOf(c.guestTimeLocked(now))
}

func fieldsOf(t time.Time) fields {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return fields{sec: s, min: mi, hour: h, wday: int(t.Weekday()) + 1, mday: d, mon: int(mo), year: y}
}

// setClockLocked starts the running clock at f now.
func (c *CMOS) setClockLocked(now time.Time, f fields) {
	t := time.Date(f.year, time.Month(f.mon), f.mday, f.hour, f.min, f.sec, 0, time.UTC)
	c.offset = t.Unix() - wall(now).Unix()
	c.lastSec = c.guestSecLocked(now)
}

// updateLocked runs the update cycles that completed by now: UF for any,
// AF if the time now matches the alarm. Updates are inhibited while SET is
// set.
func (c *CMOS) updateLocked(now time.Time) {
	if c.ram[regB]&bSET != 0 {
		c.lastSec = c.guestSecLocked(now)
		return
	}
	sec := c.guestSecLocked(now)
	if sec == c.lastSec {
		return
	}
	c.lastSec = sec
	c.flags |= cUF
	f := fieldsOf(c.guestTimeLocked(now))
	match := true
	for _, p := range [][2]uint8{{regSecondsAlarm, regSeconds}, {regMinutesAlarm, regMinutes}, {regHoursAlarm, regHours}} {
		a := c.ram[p[0]]
		if a&0xC0 != 0xC0 && a != c.encodeLocked(p[1], f) {
			match = false
		}
	}
	if match {
		c.flags |= cAF
	}
}

// armLocked starts the timer for the next second boundary if an update
// interrupt or alarm is enabled and none is pending.
func (c *CMOS) armLocked() {
	if c.closed || c.armed || c.ram[regB]&(bUIE|bAIE) == 0 || c.ram[regB]&bSET != 0 {
		return
	}
	d := time.Second - time.Duration(c.now().Nanosecond()) + time.Millisecond
	c.armed = true
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.Tick)
		return
	}
	c.timer.Reset(d)
}

// encodeLocked is register idx's byte for f in register B's mode.
func (c *CMOS) encodeLocked(idx uint8, f fields) uint8 {
	b := c.ram[regB]
	enc := func(v int) uint8 {
		if b&bDM != 0 {
			return uint8(v)
		}
		v = mod(v, 100)
		return uint8(v/10<<4 | v%10)
	}
	switch idx {
	case regSeconds:
		return enc(f.sec)
	case regMinutes:
		return enc(f.min)
	case regHours:
		if b&b24 != 0 {
			return enc(f.hour)
		}
		h := f.hour % 12
		if h == 0 {
			h = 12
		}
		if f.hour >= 12 {
			return enc(h) | 0x80
		}
		return enc(h)
	case regDayOfWeek:
		return enc(f.wday)
	case regDayOfMonth:
		return enc(f.mday)
	case regMonth:
		return enc(f.mon)
	case regYear:
		return enc(mod(f.year, 100))
	case regCentury:
		return enc(floorDiv(f.year, 100))
	}
	return 0
}

// decodeLocked stores register idx's byte v into f, in register B's mode.
func (c *CMOS) decodeLocked(idx uint8, v uint8, f *fields) {
	b := c.ram[regB]
	dec := func(v uint8) int {
		if b&bDM != 0 {
			return int(v)
		}
		return int(v>>4)*10 + int(v&0x0F)
	}
	switch idx {
	case regSeconds:
		f.sec = dec(v)
	case regMinutes:
		f.min = dec(v)
	case regHours:
		if b&b24 != 0 {
			f.hour = dec(v)
			return
		}
		h := dec(v&0x7F) % 12 // 12 AM is hour 0, 12 PM hour 12
		if v&0x80 != 0 {
			h += 12
		}
		f.hour = h
	case regDayOfWeek:
		f.wday = dec(v)
	case regDayOfMonth:
		f.mday = dec(v)
	case regMonth:
		f.mon = dec(v)
	case regYear:
		f.year = floorDiv(f.year, 100)*100 + dec(v)
	case regCentury:
		f.year = dec(v)*100 + mod(f.year, 100)
	}
}

// mod is a modulo n in [0, n).
func mod(a, n int) int { return (a%n + n) % n }

func floorDiv(a, n int) int { return (a - mod(a, n)) / n }
