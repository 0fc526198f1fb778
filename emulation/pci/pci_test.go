package pci

import (
	"encoding/binary"
	"testing"
)

// cfg performs a mechanism #1 access the way SeaBIOS does: a dword write
// of the address to 0xCF8, then the data access at 0xCFC + (reg & 3).
func cfgRead(h *Host, dev, fn, reg uint8, n int) uint32 {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], 0x8000_0000|uint32(dev)<<11|uint32(fn)<<8|uint32(reg&0xFC))
	h.Write(0, a[:])
	d := make([]byte, 4)
	h.Read(4+uint64(reg&3), d[:n])
	return binary.LittleEndian.Uint32(d)
}

func cfgWrite(h *Host, dev, fn, reg uint8, v []byte) {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], 0x8000_0000|uint32(dev)<<11|uint32(fn)<<8|uint32(reg&0xFC))
	h.Write(0, a[:])
	h.Write(4+uint64(reg&3), v)
}

func TestHostBridgeAndPAM(t *testing.T) {
	var seen []PAM
	h := NewHost()
	br := NewI440FX(func(p PAM) { seen = append(seen, p) })
	if err := h.Add("i440fx", 0, 0, br); err != nil {
		t.Fatal(err)
	}
	if err := h.Add("again", 0, 0, br); err == nil {
		t.Error("two functions at 00:00.0 accepted")
	}
	if id := cfgRead(h, 0, 0, 0, 4); id != 0x1237_8086 {
		t.Errorf("id %#x", id)
	}
	if class := cfgRead(h, 0, 0, 0x08, 4); class>>8 != 0x060000 {
		t.Errorf("class %#x", class)
	}
	if v := cfgRead(h, 5, 0, 0, 4); v != 0xFFFF_FFFF {
		t.Errorf("absent device reads %#x", v)
	}
	// The identity is read-only.
	cfgWrite(h, 0, 0, 0, []byte{0, 0, 0, 0})
	if id := cfgRead(h, 0, 0, 0, 4); id != 0x1237_8086 {
		t.Errorf("id after write %#x", id)
	}
	// SeaBIOS makes 0xC0000-0xEFFFF RAM read/write and 0xF0000 RAM
	// read/write: PAM1-6 = 0x33, PAM0 = 0x30 (byte writes).
	cfgWrite(h, 0, 0, 0x59, []byte{0xFF}) // only bits 4-5 stick
	for reg := uint8(0x5A); reg <= 0x5F; reg++ {
		cfgWrite(h, 0, 0, reg, []byte{0xFF})
	}
	p := br.PAM()
	if p != (PAM{0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33}) {
		t.Errorf("PAM % x", p)
	}
	if len(seen) != 7 || seen[6] != p {
		t.Errorf("%d change reports", len(seen))
	}
	cfgWrite(h, 0, 0, 0x5A, []byte{0x33}) // no change, no report
	if len(seen) != 7 {
		t.Errorf("report without a change")
	}
	// Segment map.
	if len(PAMSegments) != 13 || PAMSegments[0].Base != 0xC0000 || PAMSegments[12].Base != 0xF0000 || PAMSegments[12].Size != 0x10000 {
		t.Fatalf("segments %+v", PAMSegments)
	}
	if a := PAMSegments[12].Access(p); a != PAMRead|PAMWrite {
		t.Errorf("F segment access %d", a)
	}
	if a := PAMSegments[1].Access(PAM{0, 0x10}); a != PAMRead {
		t.Errorf("C4000 segment access %d", a)
	}
}

func TestAddressRegister(t *testing.T) {
	h := NewHost()
	h.Write(0, []byte{0xFF, 0xFF, 0xFF, 0xFF})
	d := make([]byte, 4)
	h.Read(0, d)
	if v := binary.LittleEndian.Uint32(d); v != 0x80FF_FFFC {
		t.Errorf("address reads %#x", v)
	}
	h.Write(0, []byte{1}) // byte write: not the address register
	h.Read(0, d)
	if v := binary.LittleEndian.Uint32(d); v != 0x80FF_FFFC {
		t.Errorf("byte write changed the address: %#x", v)
	}
	if err := h.Add("bad", 32, 0, NewI440FX(nil)); err == nil {
		t.Error("device 32 accepted")
	}
}

// FuzzHost drives the mechanism with arbitrary port accesses: no panic,
// and the bridge's identity never changes.
func FuzzHost(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		h := NewHost()
		br := NewI440FX(nil)
		h.Add("i440fx", 0, 0, br)
		for len(b) >= 6 {
			off := uint64(b[0] % 8)
			n := []int{1, 2, 4}[b[1]%3]
			data := make([]byte, n)
			copy(data, b[2:6])
			if b[1]&0x80 != 0 {
				h.Read(off, data)
			} else {
				h.Write(off, data)
			}
			b = b[6:]
		}
		if binary.LittleEndian.Uint32(br.Get(0, 4)) != 0x1237_8086 {
			t.Fatal("identity changed")
		}
	})
}

func TestPIIX3(t *testing.T) {
	h := NewHost()
	isa := NewPIIX3()
	if err := h.Add("piix3", 1, 0, isa); err != nil {
		t.Fatal(err)
	}
	if id := cfgRead(h, 1, 0, 0, 4); id != 0x7000_8086 {
		t.Errorf("id %#x", id)
	}
	if ht := cfgRead(h, 1, 0, 0x0E, 1); ht != 0x80 {
		t.Errorf("header type %#x: want multi-function", ht)
	}
	if _, ok := isa.Route(0); ok {
		t.Error("PIRQA routed at reset")
	}
	// SeaBIOS routes PIRQA-D to IRQs 10, 10, 11, 11.
	cfgWrite(h, 1, 0, 0x60, []byte{10, 10, 11, 11})
	for pin, want := range []uint8{10, 10, 11, 11} {
		if irq, ok := isa.Route(pin); !ok || irq != want {
			t.Errorf("PIRQ%c -> %d %v", 'A'+pin, irq, ok)
		}
	}
	cfgWrite(h, 1, 0, 0x60, []byte{0x7F}) // reserved bits masked: IRQ 15
	if irq, ok := isa.Route(0); !ok || irq != 15 {
		t.Errorf("after masked write: %d %v", irq, ok)
	}
	cfgWrite(h, 1, 0, 0x61, []byte{8}) // reserved IRQ
	if _, ok := isa.Route(1); ok {
		t.Error("PIRQB routed to reserved IRQ 8")
	}
}
