// Package pit models a PC's Intel 8254 programmable interval timer (ports
// 0x40-0x43) and the timer bits of port 0x61 (NMI status and control,
// "port B"), for a platform without an in-kernel PIT (tcg). Section
// numbers refer to Intel's 8254 datasheet (order 231164); port 0x61 to
// the 82371AB PIIX4 datasheet §4.7.2.
//
// The counters count the host's clock at 1.193182 MHz, not the guest's
// instructions: a count read is what has elapsed since the count was
// loaded. Channel 0's OUT drives IRQ 0 with a host timer on each rising
// edge; channel 2's gate and OUT are port 0x61's bits 0 and 5, and bit 4
// toggles every 15 µs, as the PIIX's refresh request does, which firmware
// uses to wait.
//
// What it does: the control word (§"Write Operations") with counter latch
// and read-back commands, the three access modes (LSB, MSB, LSB then
// MSB), modes 0 to 5 as far as their count and OUT are concerned, and the
// gate of channel 2 (channels 0 and 1 have theirs tied high on a PC).
// Left out: BCD counting (the bit is kept and read back; counts are
// binary), and channel 1 does nothing (it refreshed DRAM). IRQ 0 comes at
// most every 100 µs however fast the guest programs the timer: counts
// read stay exact, edges closer than that coalesce.
package pit

import (
	"sync"
	"time"
)

// Ports.
const (
	Base      = 0x40 // counters 0-2 and the control word
	Size      = 4
	PortB     = 0x61
	frequency = 1193182 // Hz
)

// minPeriod bounds how often IRQ 0 fires.
const minPeriod = 100 * time.Microsecond

// channel is one counter.
type channel struct {
	mode   uint8 // 0-5
	access uint8 // 1 LSB, 2 MSB, 3 LSB then MSB
	bcd    bool
	reload uint32 // the count loaded, 0 meaning 65536
	armed  bool   // a count was loaded since the mode was set
	start  time.Time
	gate   bool

	writeHigh bool // LSB/MSB access: the next write is the MSB
	pendingLo uint8
	readHigh  bool
	latched   bool
	latch     uint16
	latchHigh bool // reading a latched count's MSB next
	status    bool // a status byte is latched
	statusVal uint8
	nullCount bool
}

func (c *channel) period() uint64 {
	if c.reload == 0 {
		return 65536
	}
	return uint64(c.reload)
}

// ticks is how many input clocks have passed since the count was loaded.
func (c *channel) ticks(now time.Time) uint64 {
	if !c.armed || !c.gate {
		return 0
	}
	d := now.Sub(c.start)
	if d < 0 {
		return 0
	}
	return uint64(d.Nanoseconds()) * frequency / 1e9
}

// count is the counting element's value now.
func (c *channel) count(now time.Time) uint16 {
	if !c.armed {
		return 0
	}
	n, t := c.period(), c.ticks(now)
	switch c.mode {
	case 2, 6:
		return uint16(n - t%n)
	case 3, 7:
		half := n / 2
		if half == 0 {
			half = 1
		}
		return uint16(n - 2*(t%half))
	}
	// Modes 0, 1, 4, 5 count down once and go on wrapping.
	return uint16((n - t%65536) & 0xFFFF)
}

// out is the channel's OUT now.
func (c *channel) out(now time.Time) bool {
	if !c.armed {
		return c.mode != 0
	}
	n, t := c.period(), c.ticks(now)
	switch c.mode {
	case 0:
		return t >= n
	case 1:
		return t >= n
	case 2, 6:
		return !c.gate || t%n != n-1
	case 3, 7:
		return !c.gate || t%n < (n+1)/2
	case 4, 5:
		return t != n
	}
	return true
}

// nextEdge is when OUT next rises after now, or the zero time if never
// (with the gate as it is).
func (c *channel) nextEdge(now time.Time) time.Time {
	if !c.armed || !c.gate {
		return time.Time{}
	}
	n, t := c.period(), c.ticks(now)
	var at uint64 // in ticks since start
	switch c.mode {
	case 0, 1:
		if t >= n {
			return time.Time{}
		}
		at = n
	case 2, 6, 3, 7:
		at = (t/n + 1) * n
	default:
		return time.Time{}
	}
	return c.start.Add(time.Duration(at * 1e9 / frequency))
}

// PIT is the timer. Its methods are safe for concurrent use.
type PIT struct {
	mu      sync.Mutex
	now     func() time.Time
	ch      [3]channel // guarded by mu
	speaker bool       // port 0x61 bit 1; guarded by mu
	timer   *time.Timer
	irq0    func(bool)
	boot    time.Time
	edges   uint64 // IRQ 0 edges raised; guarded by mu
	closed  bool   // guarded by mu
}

// New makes the timer as at power-on: no counts loaded. irq0 drives IRQ
// 0 (it is called with true then false for each edge, from a timer
// goroutine, without the PIT's lock); now is the clock (nil: the host's).
func New(irq0 func(bool), now func() time.Time) *PIT {
	if now == nil {
		now = time.Now
	}
	p := &PIT{now: now, irq0: irq0, boot: now()}
	p.ch[0].gate, p.ch[1].gate = true, true
	return p
}

// Close stops channel 0's timer.
func (p *PIT) Close() {
	p.mu.Lock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
}

// Edges is how many IRQ 0 edges the timer has raised.
func (p *PIT) Edges() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.edges
}

// scheduleLocked sets channel 0's timer for its next rising edge.
func (p *PIT) scheduleLocked() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	if p.closed || p.irq0 == nil {
		return
	}
	now := p.now()
	at := p.ch[0].nextEdge(now)
	if at.IsZero() {
		return
	}
	d := max(at.Sub(now), minPeriod)
	p.timer = time.AfterFunc(d, p.fire)
}

// fire raises IRQ 0 and schedules the next edge.
func (p *PIT) fire() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.edges++
	p.scheduleLocked()
	p.mu.Unlock()
	p.irq0(true)
	p.irq0(false)
}

// Read serves ports 0x40-0x43 (offset 0-3).
func (p *PIT) Read(offset uint64, data []byte) {
	p.mu.Lock()
	var v uint8 = 0xFF
	if offset < 3 {
		v = p.readCounter(&p.ch[offset])
	}
	p.mu.Unlock()
	for i := range data {
		data[i] = v
	}
}

func (p *PIT) readCounter(c *channel) uint8 {
	if c.status {
		c.status = false
		return c.statusVal
	}
	if c.latched {
		if c.access == 3 && !c.latchHigh {
			c.latchHigh = true
			return uint8(c.latch)
		}
		c.latched, c.latchHigh = false, false
		if c.access == 2 || c.access == 3 {
			return uint8(c.latch >> 8)
		}
		return uint8(c.latch)
	}
	n := c.count(p.now())
	switch c.access {
	case 1:
		return uint8(n)
	case 2:
		return uint8(n >> 8)
	}
	c.readHigh = !c.readHigh
	if c.readHigh {
		return uint8(n)
	}
	return uint8(n >> 8)
}

// Write serves the counters and the control word.
func (p *PIT) Write(offset uint64, data []byte) {
	if len(data) == 0 || offset > 3 {
		return
	}
	v := data[0]
	p.mu.Lock()
	defer p.mu.Unlock()
	if offset == 3 {
		p.control(v)
		return
	}
	c := &p.ch[offset]
	switch c.access {
	case 1:
		p.load(int(offset), uint32(v))
	case 2:
		p.load(int(offset), uint32(v)<<8)
	default:
		if !c.writeHigh {
			c.pendingLo, c.writeHigh = v, true
			if c.mode == 0 {
				c.armed = false // writing the LSB stops the count (§"Mode 0")
			}
			return
		}
		c.writeHigh = false
		p.load(int(offset), uint32(c.pendingLo)|uint32(v)<<8)
	}
}

// load starts channel i counting from n.
func (p *PIT) load(i int, n uint32) {
	c := &p.ch[i]
	c.reload, c.armed, c.nullCount = n, true, false
	c.start = p.now()
	if i == 0 {
		p.scheduleLocked()
	}
}

// control is a write of the control word.
func (p *PIT) control(v uint8) {
	sel := v >> 6
	if sel == 3 { // read-back (§"Read-Back Command")
		now := p.now()
		for i := 0; i < 3; i++ {
			if v&(2<<i) == 0 {
				continue
			}
			c := &p.ch[i]
			if v&0x20 == 0 && !c.latched {
				c.latched, c.latch, c.latchHigh = true, c.count(now), false
			}
			if v&0x10 == 0 && !c.status {
				s := c.mode<<1 | c.access<<4
				if c.bcd {
					s |= 1
				}
				if c.nullCount {
					s |= 0x40
				}
				if c.out(now) {
					s |= 0x80
				}
				c.status, c.statusVal = true, s
			}
		}
		return
	}
	c := &p.ch[sel]
	access := (v >> 4) & 3
	if access == 0 { // counter latch command
		if !c.latched {
			c.latched, c.latch, c.latchHigh = true, c.count(p.now()), false
		}
		return
	}
	c.access, c.mode, c.bcd = access, (v>>1)&7, v&1 != 0
	if c.mode > 5 {
		c.mode -= 4 // 6 and 7 are modes 2 and 3
	}
	c.armed, c.nullCount, c.writeHigh, c.readHigh, c.latched, c.status = false, true, false, false, false, false
	if sel == 0 {
		p.scheduleLocked()
	}
}

// PortB is port 0x61's timer bits as a bus device.
func (p *PIT) PortB() PortBDevice { return PortBDevice{p} }

// PortBDevice is port 0x61: bit 0 channel 2's gate and bit 1 the
// speaker's data enable (read and write), bit 4 the refresh toggle and bit
// 5 channel 2's OUT (read only). The NMI bits read 0 and are ignored.
type PortBDevice struct{ p *PIT }

func (d PortBDevice) Read(_ uint64, data []byte) {
	p := d.p
	p.mu.Lock()
	now := p.now()
	var v uint8
	if p.ch[2].gate {
		v |= 0x01
	}
	if p.speaker {
		v |= 0x02
	}
	if (now.Sub(p.boot).Nanoseconds()/15085)&1 != 0 {
		v |= 0x10
	}
	if p.ch[2].out(now) {
		v |= 0x20
	}
	p.mu.Unlock()
	for i := range data {
		data[i] = v
	}
}

func (d PortBDevice) Write(_ uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	p := d.p
	p.mu.Lock()
	defer p.mu.Unlock()
	c := &p.ch[2]
	gate := data[0]&0x01 != 0
	if gate && !c.gate && c.armed {
		c.start = p.now() // a rising gate (re)starts the count
	}
	c.gate = gate
	p.speaker = data[0]&0x02 != 0
}
