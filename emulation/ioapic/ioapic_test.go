package ioapic

import (
	"encoding/binary"
	"testing"
)

type rig struct {
	a   *IOAPIC
	got []Message
}

func newRig() *rig {
	r := &rig{}
	r.a = New(Config{Deliver: func(m Message) { r.got = append(r.got, m) }})
	return r
}

func (r *rig) write(reg uint8, v uint32) {
	r.a.Write(offSelect, []byte{reg, 0, 0, 0})
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	r.a.Write(offWindow, b[:])
}

func (r *rig) read(reg uint8) uint32 {
	r.a.Write(offSelect, []byte{reg, 0, 0, 0})
	var b [4]byte
	r.a.Read(offWindow, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (r *rig) take() []Message {
	m := r.got
	r.got = nil
	return m
}

func TestRegisters(t *testing.T) {
	r := newRig()
	if v := r.read(regVersion); v != 0x00170020 {
		t.Errorf("version %#x, want 0x00170020 (24 entries, version 0x20)", v)
	}
	for pin := 0; pin < Pins; pin++ {
		if v := r.read(regRedir + uint8(2*pin)); v != entMasked {
			t.Errorf("pin %d at reset: %#x, want masked", pin, v)
		}
	}
	r.write(regID, 0xFFFFFFFF)
	if v := r.read(regID); v != 0x0F000000 {
		t.Errorf("ID %#x, want only bits 24-27", v)
	}
	// Read-only bits stay: remote IRR and delivery status.
	r.write(regRedir, 0xFFFFFFFF)
	if v := r.read(regRedir); v&(entRemoteIRR|1<<12) != 0 {
		t.Errorf("entry 0 %#x: read-only bits written", v)
	}
	r.write(regRedir+1, 0xAB000000)
	if v := r.read(regRedir + 1); v != 0xAB000000 {
		t.Errorf("entry 0 high %#x", v)
	}
	// Byte reads see the dword's bytes.
	r.a.Write(offSelect, []byte{regVersion, 0, 0, 0})
	var b [1]byte
	r.a.Read(offWindow+2, b[:])
	if b[0] != 0x17 {
		t.Errorf("byte 2 of the version: %#x", b[0])
	}
}

func TestEdge(t *testing.T) {
	r := newRig()
	r.write(regRedir+2*4+1, 3<<24)
	r.write(regRedir+2*4, 0x34) // fixed, physical, edge, unmasked
	r.a.SetPin(4, true)
	if m := r.take(); len(m) != 1 || m[0] != (Message{Dest: 3, Vector: 0x34, Pin: 4}) {
		t.Fatalf("rising edge: %+v", m)
	}
	r.a.SetPin(4, true)
	if m := r.take(); len(m) != 0 {
		t.Errorf("no edge, yet %+v", m)
	}
	r.a.SetPin(4, false)
	r.a.SetPin(4, true)
	if m := r.take(); len(m) != 1 {
		t.Errorf("second edge: %+v", m)
	}
	// Masked: nothing, and no message when unmasked later (an edge is
	// lost while masked).
	r.write(regRedir+2*4, 0x34|entMasked)
	r.a.SetPin(4, false)
	r.a.SetPin(4, true)
	r.write(regRedir+2*4, 0x34)
	if m := r.take(); len(m) != 0 {
		t.Errorf("masked edge delivered: %+v", m)
	}
}

func TestLevel(t *testing.T) {
	r := newRig()
	r.write(regRedir+2*9, 0x49|entLevel|entLogical|1<<8) // lowest priority, logical, level
	r.a.SetPin(9, true)
	if m := r.take(); len(m) != 1 || m[0] != (Message{Logical: true, Mode: 1, Vector: 0x49, Level: true, Pin: 9}) {
		t.Fatalf("asserted: %+v", m)
	}
	if v := r.read(regRedir + 2*9); v&entRemoteIRR == 0 {
		t.Error("remote IRR not set while the interrupt is in service")
	}
	r.a.SetPin(9, true)
	if m := r.take(); len(m) != 0 {
		t.Errorf("sent again before the EOI: %+v", m)
	}
	r.a.EOI(0x48) // another vector
	if m := r.take(); len(m) != 0 {
		t.Errorf("EOI of another vector sent %+v", m)
	}
	r.a.EOI(0x49) // still asserted: again
	if m := r.take(); len(m) != 1 {
		t.Errorf("EOI with the pin asserted: %+v", m)
	}
	r.a.SetPin(9, false)
	r.a.Write(offEOI, []byte{0x49, 0, 0, 0}) // the EOI register
	if m := r.take(); len(m) != 0 {
		t.Errorf("EOI with the pin low: %+v", m)
	}
	if v := r.read(regRedir + 2*9); v&entRemoteIRR != 0 {
		t.Error("remote IRR still set after the EOI")
	}
	// Masked while asserted, then unmasked: sent at the unmask.
	r.write(regRedir+2*9, 0x49|entLevel|entMasked)
	r.a.SetPin(9, true)
	if m := r.take(); len(m) != 0 {
		t.Errorf("masked level sent %+v", m)
	}
	r.write(regRedir+2*9, 0x49|entLevel)
	if m := r.take(); len(m) != 1 {
		t.Errorf("unmasking an asserted level pin: %+v", m)
	}
	// Active low: asserted when the line is low.
	r.write(regRedir+2*10, 0x4A|entLevel|entLowActive)
	r.a.SetPin(10, true)
	r.a.SetPin(10, false)
	if m := r.take(); len(m) != 1 || m[0].Vector != 0x4A {
		t.Errorf("active-low pin pulled low: %+v", m)
	}
}

// FuzzIOAPIC runs random register traffic and pin changes: no panic, and
// every message names a pin that exists.
func FuzzIOAPIC(f *testing.F) {
	f.Add([]byte{0, 0x10, 4, 0x34, 0, 0, 0, 2, 4, 1})
	f.Add([]byte{0, 0x12, 4, 0x49, 0x80, 0, 0, 2, 9, 1, 3, 0x49})
	f.Fuzz(func(t *testing.T, ops []byte) {
		a := New(Config{Deliver: func(m Message) {
			if m.Pin < 0 || m.Pin >= Pins {
				t.Fatalf("message from pin %d", m.Pin)
			}
		}})
		for len(ops) >= 2 {
			op, arg := ops[0], ops[1]
			ops = ops[2:]
			switch op % 5 {
			case 0: // select
				a.Write(offSelect, []byte{arg, 0, 0, 0})
			case 1: // read anywhere, any size
				b := make([]byte, 1+int(arg)%8)
				a.Read(uint64(arg)*4, b)
			case 2: // pin
				a.SetPin(int(arg)-4, arg&1 != 0)
			case 3: // EOI
				a.EOI(arg)
			case 4: // write the window with the next four bytes
				var v [4]byte
				n := copy(v[:], ops)
				ops = ops[n:]
				a.Write(uint64(arg)&0x7F, v[:])
			}
		}
	})
}
