package i8042

import (
	"testing"
)

type rig struct {
	c           *Controller
	irq1, irq12 bool
	reset       int
}

func newRig() *rig {
	r := &rig{}
	r.c = New(Config{
		IRQ1:  func(l bool) { r.irq1 = l },
		IRQ12: func(l bool) { r.irq12 = l },
		Reset: func() { r.reset++ },
	})
	return r
}

func (r *rig) cmd(b byte)  { r.c.CommandPort().Write(0, []byte{b}) }
func (r *rig) data(b byte) { r.c.DataPort().Write(0, []byte{b}) }
func (r *rig) status() byte {
	var b [1]byte
	r.c.CommandPort().Read(0, b[:])
	return b[0]
}
func (r *rig) read() byte {
	var b [1]byte
	r.c.DataPort().Read(0, b[:])
	return b[0]
}

// drain reads everything waiting, as firmware's flush loop does.
func (r *rig) drain() []byte {
	var out []byte
	for i := 0; i < 32 && r.status()&stOBF != 0; i++ {
		out = append(out, r.read())
	}
	return out
}

func TestFirmwareSequence(t *testing.T) {
	r := newRig()
	if got := r.drain(); len(got) != 0 {
		t.Fatalf("bytes waiting at power-on: % x", got)
	}
	r.cmd(0xAA)
	if got := r.drain(); len(got) != 1 || got[0] != 0x55 {
		t.Errorf("self test % x", got)
	}
	r.cmd(0xAB)
	if got := r.drain(); len(got) != 1 || got[0] != 0x00 {
		t.Errorf("interface test % x", got)
	}
	// Disable interrupts while probing (command byte 0x30), then reset
	// the keyboard: ACK, BAT passed.
	r.cmd(0x60)
	r.data(0x30)
	r.data(0xFF)
	if got := r.drain(); len(got) != 2 || got[0] != 0xFA || got[1] != 0xAA {
		t.Errorf("keyboard reset % x", got)
	}
	if r.irq1 {
		t.Error("IRQ 1 raised with interrupts disabled")
	}
	r.cmd(0x20)
	if got := r.read(); got != 0x30 {
		t.Errorf("command byte %#x", got)
	}
	// LEDs with their argument: two ACKs.
	r.data(0xED)
	r.data(0x02)
	if got := r.drain(); len(got) != 2 || got[0] != 0xFA || got[1] != 0xFA {
		t.Errorf("set LEDs % x", got)
	}
	// Aux reset through 0xD4: ACK, BAT, id, flagged as aux data.
	r.cmd(0xD4)
	r.data(0xFF)
	if r.status()&stAuxOBF == 0 {
		t.Error("aux data not flagged")
	}
	if got := r.drain(); len(got) != 3 || got[0] != 0xFA || got[1] != 0xAA || got[2] != 0 {
		t.Errorf("aux reset % x", got)
	}
}

func TestInterruptsAndReset(t *testing.T) {
	r := newRig()
	r.cmd(0x60)
	r.data(cbKbdInt | cbAuxInt | cbSys)
	r.data(0xF4) // enable scanning: ACK raises IRQ 1
	if !r.irq1 {
		t.Error("IRQ 1 not raised for keyboard data")
	}
	r.read()
	if r.irq1 {
		t.Error("IRQ 1 still raised after the read")
	}
	r.cmd(0xD4)
	r.data(0xF4)
	if !r.irq12 || r.irq1 {
		t.Errorf("aux data: irq1 %v irq12 %v", r.irq1, r.irq12)
	}
	r.read()
	r.cmd(0xFE)
	if r.reset != 1 || r.c.Resets() != 1 {
		t.Errorf("reset pulses %d", r.reset)
	}
	r.cmd(0xD1)
	r.data(0xCE) // output port with reset bit low
	if r.reset != 2 {
		t.Errorf("reset via output port: %d pulses", r.reset)
	}
	if r.status()&stSys == 0 {
		t.Error("system flag clear")
	}
}

// FuzzI8042 writes and reads both ports arbitrarily: no panic, the queue
// stays bounded, and IRQ 1 is only up with its enable bit set.
func FuzzI8042(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newRig()
		for len(b) >= 2 {
			switch b[0] % 4 {
			case 0:
				r.cmd(b[1])
			case 1:
				r.data(b[1])
			case 2:
				r.read()
			case 3:
				r.status()
			}
			r.c.mu.Lock()
			n, cb := len(r.c.queue), r.c.cmdByte
			r.c.mu.Unlock()
			if n > maxQueue {
				t.Fatalf("queue %d", n)
			}
			if r.irq1 && cb&cbKbdInt == 0 {
				t.Fatal("IRQ 1 up with keyboard interrupts disabled")
			}
			b = b[2:]
		}
	})
}
