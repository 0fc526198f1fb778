package pit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable clock for the counters.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func ticks(n int) time.Duration { return time.Duration(n) * time.Second / frequency }

func TestCountsFollowTheClock(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	p := New(nil, c.now)
	p.Write(3, []byte{0x34}) // channel 0, LSB then MSB, mode 2
	p.Write(0, []byte{0x00}) // count 0x1000
	p.Write(0, []byte{0x10})
	c.add(ticks(0x100) + time.Nanosecond)
	p.Write(3, []byte{0x00}) // latch channel 0
	lo, hi := []byte{0}, []byte{0}
	p.Read(0, lo)
	p.Read(0, hi)
	if got := uint16(hi[0])<<8 | uint16(lo[0]); got != 0x1000-0x100 {
		t.Fatalf("count %#x, want %#x", got, 0x1000-0x100)
	}
	// The latched value stays until read; a new read is live.
	c.add(ticks(0x1000)) // a whole period later: the same phase
	p.Read(0, lo)
	p.Read(0, hi)
	if got := uint16(hi[0])<<8 | uint16(lo[0]); got != 0x1000-0x100 {
		t.Fatalf("live count %#x after a period", got)
	}
}

func TestChannel2ThroughPortB(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	p := New(nil, c.now)
	b := p.PortB()
	b.Write(0, []byte{0x01}) // gate 2 on, speaker off
	p.Write(3, []byte{0xB0}) // channel 2, LSB/MSB, mode 0
	p.Write(2, []byte{0x00})
	p.Write(2, []byte{0x08}) // 0x800 ticks, as SeaBIOS calibrates
	v := []byte{0}
	b.Read(0, v)
	if v[0]&0x20 != 0 || v[0]&0x01 == 0 {
		t.Fatalf("port 0x61 %#x: OUT2 high before terminal count, or gate lost", v[0])
	}
	c.add(ticks(0x800) + time.Microsecond)
	b.Read(0, v)
	if v[0]&0x20 == 0 {
		t.Fatalf("port 0x61 %#x: OUT2 low after terminal count", v[0])
	}
	// Read-back of channel 2's status: OUT high, LSB/MSB, mode 0.
	p.Write(3, []byte{0xE8})
	p.Read(2, v)
	if v[0] != 0xB0 {
		t.Fatalf("status %#x, want 0xB0", v[0])
	}
	// The refresh bit toggles with time.
	b.Read(0, v)
	first := v[0] & 0x10
	c.add(15085 * time.Nanosecond)
	b.Read(0, v)
	if v[0]&0x10 == first {
		t.Error("refresh bit did not toggle after 15 µs")
	}
}

func TestIRQ0(t *testing.T) {
	var edges atomic.Int32
	p := New(func(level bool) {
		if level {
			edges.Add(1)
		}
	}, nil)
	defer p.Close()
	p.Write(3, []byte{0x34})
	n := uint16(frequency / 1000) // 1 kHz
	p.Write(0, []byte{uint8(n)})
	p.Write(0, []byte{uint8(n >> 8)})
	time.Sleep(100 * time.Millisecond)
	if got := edges.Load(); got < 30 || got > 120 {
		t.Errorf("%d IRQ 0 edges in 100 ms at 1 kHz", got)
	}
	// The fastest rate is held to minPeriod.
	p.Write(0, []byte{2})
	p.Write(0, []byte{0})
	before := edges.Load()
	time.Sleep(50 * time.Millisecond)
	if got := edges.Load() - before; got > int32(50*time.Millisecond/minPeriod)+5 {
		t.Errorf("%d edges in 50 ms at the fastest rate", got)
	}
}

// FuzzPIT throws arbitrary port accesses and clock steps at the timer:
// nothing panics and nothing hangs.
func FuzzPIT(f *testing.F) {
	f.Add([]byte{3, 0x34, 0, 0x00, 0, 0x10, 4, 9, 3, 0x00, 5, 0, 5, 0})
	f.Add([]byte{6, 0x01, 3, 0xB0, 2, 0x00, 2, 0x08, 7, 0, 3, 0xE8, 5, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &clock{t: time.Unix(1000, 0)}
		p := New(nil, c.now)
		defer p.Close()
		for len(b) >= 2 {
			op, v := b[0]%8, b[1]
			b = b[2:]
			switch op {
			case 0, 1, 2, 3:
				p.Write(uint64(op), []byte{v})
			case 4:
				c.add(time.Duration(v) * time.Microsecond)
			case 5:
				p.Read(uint64(v%4), []byte{0})
			case 6:
				p.PortB().Write(0, []byte{v})
			case 7:
				p.PortB().Read(0, []byte{0})
			}
		}
	})
}
