package pic

import (
	"testing"
)

// initPair programs the pair as a PC BIOS does: ICW1 0x11 (edge, cascade,
// ICW4), vectors 0x08 and 0x70, the cascade on IR2, 8086 mode; masks off.
func initPair(p *PIC) {
	m, s := p.Master(), p.Slave()
	for _, w := range []struct {
		c   Chip
		off uint64
		v   byte
	}{{m, 0, 0x11}, {m, 1, 0x08}, {m, 1, 0x04}, {m, 1, 0x01}, {s, 0, 0x11}, {s, 1, 0x70}, {s, 1, 0x02}, {s, 1, 0x01}, {m, 1, 0}, {s, 1, 0}} {
		w.c.Write(w.off, []byte{w.v})
	}
}

func read(c Chip, off uint64) byte {
	b := []byte{0}
	c.Read(off, b)
	return b[0]
}

func TestEdgeInterruptAndEOI(t *testing.T) {
	notified := 0
	p := New(func() { notified++ })
	initPair(p)
	if p.Pending() {
		t.Fatal("pending with no request")
	}
	p.SetIRQ(0, true)
	if !p.Pending() || notified == 0 {
		t.Fatal("IRQ 0 not pending")
	}
	if v, ok := p.Acknowledge(); !ok || v != 0x08 {
		t.Fatalf("vector %#x %v, want 0x08", v, ok)
	}
	// In service: IRQ 1 (lower priority) waits, and edge IRQ 0 needs a new edge.
	p.SetIRQ(1, true)
	if p.Pending() {
		t.Fatal("IRQ 1 interrupts IRQ 0's handler")
	}
	p.Master().Write(0, []byte{0x20}) // non-specific EOI
	if v, ok := p.Acknowledge(); !ok || v != 0x09 {
		t.Fatalf("after EOI: vector %#x %v, want 0x09", v, ok)
	}
	p.Master().Write(0, []byte{0x20})
	p.SetIRQ(0, false)
	if p.Pending() {
		t.Fatal("pending after both served")
	}
	p.SetIRQ(0, true) // a new edge
	if !p.Pending() {
		t.Fatal("the second edge of IRQ 0 is lost")
	}
}

func TestCascadeAndMasks(t *testing.T) {
	p := New(nil)
	initPair(p)
	p.Slave().Write(1, []byte{0x01}) // mask IRQ 8
	p.SetIRQ(8, true)
	if p.Pending() {
		t.Fatal("masked IRQ 8 pending")
	}
	p.Slave().Write(1, []byte{0x00})
	if v, ok := p.Acknowledge(); !ok || v != 0x70 {
		t.Fatalf("IRQ 8: vector %#x %v", v, ok)
	}
	if isr := func() byte { p.Master().Write(0, []byte{0x0B}); return read(p.Master(), 0) }(); isr != 0x04 {
		t.Errorf("master ISR %#x, want IR2 in service", isr)
	}
	if isr := func() byte { p.Slave().Write(0, []byte{0x0B}); return read(p.Slave(), 0) }(); isr != 0x01 {
		t.Errorf("slave ISR %#x", isr)
	}
	p.Slave().Write(0, []byte{0x20})
	p.Master().Write(0, []byte{0x20})
	if p.Pending() {
		t.Error("pending after the EOIs")
	}
	if got := read(p.Slave(), 1); got != 0 {
		t.Errorf("slave mask reads %#x", got)
	}
}

func TestLevelTriggeredAndSpurious(t *testing.T) {
	p := New(nil)
	initPair(p)
	p.ELCR().Write(1, []byte{0x0E}) // IRQ 9-11 level-triggered
	if got := func() byte { b := []byte{0}; p.ELCR().Read(1, b); return b[0] }(); got != 0x0E {
		t.Fatalf("ELCR2 %#x", got)
	}
	p.ELCR().Write(0, []byte{0xFF}) // IRQ 0-2 cannot be level-triggered
	if got := func() byte { b := []byte{0}; p.ELCR().Read(0, b); return b[0] }(); got != 0xF8 {
		t.Fatalf("ELCR1 %#x, want the PIIX's mask 0xF8", got)
	}
	p.SetIRQ(9, true)
	if v, _ := p.Acknowledge(); v != 0x71 {
		t.Fatalf("IRQ 9: %#x", v)
	}
	p.Slave().Write(0, []byte{0x20})
	p.Master().Write(0, []byte{0x20})
	if !p.Pending() {
		t.Fatal("a level still high must request again after EOI")
	}
	p.SetIRQ(9, false)
	if p.Pending() {
		t.Fatal("a level gone low still requests")
	}
	// An edge request withdrawn (masked) between Pending and INTA.
	p.SetIRQ(3, true)
	if !p.Pending() {
		t.Fatal("IRQ 3")
	}
	p.Master().Write(1, []byte{0x08})
	if _, ok := p.Acknowledge(); ok {
		t.Fatal("acknowledged a masked request")
	}
}

func TestPollAndRotation(t *testing.T) {
	p := New(nil)
	initPair(p)
	p.SetIRQ(5, true)
	p.Master().Write(0, []byte{0x0C}) // OCW3 poll
	if v := read(p.Master(), 0); v != 0x85 {
		t.Fatalf("poll %#x, want 0x85", v)
	}
	p.Master().Write(0, []byte{0xA0}) // rotate on non-specific EOI: 5 becomes lowest
	p.SetIRQ(4, true)
	p.SetIRQ(6, true)
	if v, _ := p.Acknowledge(); v != 0x0E {
		t.Fatalf("after rotation IR6 has priority over IR4: got %#x", v)
	}
}

// FuzzPIC throws arbitrary port writes, reads, line changes and
// acknowledges at the pair: nothing panics, and every vector comes from
// the programmed bases.
func FuzzPIC(f *testing.F) {
	f.Add([]byte{0, 0x11, 1, 0x08, 1, 0x04, 1, 0x01, 4, 0, 5})
	f.Add([]byte{2, 0x11, 3, 0x70, 3, 0x02, 3, 0x01, 6, 9, 5, 7, 1, 0x0C, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		p := New(nil)
		for len(b) >= 2 {
			op, v := b[0]%10, b[1]
			b = b[2:]
			switch op {
			case 0, 1:
				p.Master().Write(uint64(op), []byte{v})
			case 2, 3:
				p.Slave().Write(uint64(op-2), []byte{v})
			case 4, 6:
				p.SetIRQ(int(v%20), op == 4)
			case 5:
				p.Acknowledge()
			case 7:
				p.ELCR().Write(uint64(v%3), []byte{v})
			case 8:
				read(p.Master(), uint64(v%2))
				read(p.Slave(), uint64(v%2))
			case 9:
				p.Pending()
			}
		}
	})
}
