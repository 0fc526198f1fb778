package acpipm

import (
	"encoding/binary"
	"testing"
	"time"
)

func TestPowerOffAndTimer(t *testing.T) {
	offs := 0
	p := New(func() { offs++ })
	// SCI_EN alone, then sleep type 5 with SLP_EN (not soft-off here).
	p.Write(regControl, []byte{0x01, 0x00})
	p.Write(regControl, []byte{0x01, 0x34}) // SLP_TYP=5, SLP_EN
	if offs != 0 {
		t.Fatal("sleep type 5 powered off")
	}
	ctl := make([]byte, 2)
	p.Read(regControl, ctl)
	if binary.LittleEndian.Uint16(ctl)&slpEn != 0 {
		t.Error("SLP_EN reads back set")
	}
	p.Write(regControl, []byte{0x00, 0x20}) // SLP_TYP=0, SLP_EN: soft-off
	if offs != 1 {
		t.Fatalf("%d power-offs, want 1", offs)
	}
	// Status is write-one-to-clear.
	p.status = 0x8001
	p.Write(regStatus, []byte{0x01, 0x00})
	if p.status != 0x8000 {
		t.Errorf("status %#x after clearing bit 0", p.status)
	}
	// The timer advances at 3.58 MHz.
	a := make([]byte, 4)
	b := make([]byte, 4)
	p.Read(regTimer, a)
	time.Sleep(10 * time.Millisecond)
	p.Read(regTimer, b)
	d := (binary.LittleEndian.Uint32(b) - binary.LittleEndian.Uint32(a)) & 0xFFFFFF
	if d < 30000 || d > 3_000_000 {
		t.Errorf("timer advanced %d ticks in 10 ms", d)
	}
}

// FuzzPM drives the block with arbitrary accesses: it never panics, and
// only a soft-off write powers off.
func FuzzPM(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p := New(func() {})
		for len(b) >= 3 {
			off := uint64(b[0] % Size)
			n := int(b[1]%4) + 1
			data := make([]byte, n)
			for i := range data {
				data[i] = b[2]
			}
			if b[1]&0x80 != 0 {
				p.Read(off, data)
			} else {
				p.Write(off, data)
			}
			b = b[3:]
		}
	})
}
