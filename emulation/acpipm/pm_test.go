package acpipm

import (
	"encoding/binary"
	"testing"
	"time"
)

func TestPowerOffAndTimer(t *testing.T) {
	offs := 0
	p := New(func() { offs++ }, nil)
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

// TestPowerButton: the SCI follows PWRBTN_STS & PWRBTN_EN & SCI_EN, is
// lowered by writing 1 to PWRBTN_STS, and PowerButton reports whether the
// guest listens.
func TestPowerButton(t *testing.T) {
	var levels []bool
	p := New(nil, func(l bool) { levels = append(levels, l) })
	w16 := func(reg uint64, v uint16) { p.Write(reg, binary.LittleEndian.AppendUint16(nil, v)) }
	r16 := func(reg uint64) uint16 {
		b := make([]byte, 2)
		p.Read(reg, b)
		return binary.LittleEndian.Uint16(b)
	}

	// Nobody listens: the status bit is set, no SCI.
	if p.PowerButton() {
		t.Fatal("listening with PWRBTN_EN and SCI_EN clear")
	}
	if r16(regStatus)&pwrBtn == 0 || len(levels) != 0 || p.SCI() {
		t.Fatalf("status %#x, levels %v", r16(regStatus), levels)
	}
	// PWRBTN_EN without SCI_EN: still not listening, no SCI.
	w16(regEnable, pwrBtn)
	if p.PowerButton() || len(levels) != 0 {
		t.Fatalf("listening without SCI_EN (levels %v)", levels)
	}
	// SCI_EN with the stale status pending raises the SCI at once.
	w16(regControl, sciEn)
	if len(levels) != 1 || !levels[0] || !p.SCI() {
		t.Fatalf("levels %v after SCI_EN with PWRBTN_STS pending", levels)
	}
	// Writing 0 to the status (or 1 to other bits) leaves it; 1 to bit 8
	// clears it and lowers the SCI.
	w16(regStatus, 0x0001)
	if r16(regStatus)&pwrBtn == 0 || len(levels) != 1 {
		t.Fatalf("status %#x, levels %v after clearing another bit", r16(regStatus), levels)
	}
	p.Write(regStatus+1, []byte{0x01}) // the high byte alone
	if r16(regStatus)&pwrBtn != 0 || len(levels) != 2 || levels[1] || p.SCI() {
		t.Fatalf("status %#x, levels %v after write-1-to-clear", r16(regStatus), levels)
	}
	// Listening: a press raises the SCI and reports true; a second press
	// with the status still set changes nothing.
	if !p.PowerButton() || len(levels) != 3 || !levels[2] {
		t.Fatalf("press while listening: levels %v", levels)
	}
	if !p.PowerButton() || len(levels) != 3 {
		t.Fatalf("second press: levels %v", levels)
	}
	// Clearing PWRBTN_EN lowers the line though the status stays.
	w16(regEnable, 0)
	if len(levels) != 4 || levels[3] || r16(regStatus)&pwrBtn == 0 {
		t.Fatalf("levels %v after PWRBTN_EN cleared", levels)
	}
	w16(regEnable, pwrBtn)
	w16(regControl, 0) // SCI_EN off lowers it too
	if len(levels) != 6 || !levels[4] || levels[5] {
		t.Fatalf("levels %v after PWRBTN_EN set then SCI_EN cleared", levels)
	}
	// A 32-bit write at the status clears status and sets the enables.
	w16(regControl, sciEn)
	p.Write(regStatus, []byte{0x00, 0x01, 0x00, 0x01})
	if r16(regStatus) != 0 || r16(regEnable) != pwrBtn || p.SCI() {
		t.Fatalf("status %#x enable %#x sci %v after a dword write", r16(regStatus), r16(regEnable), p.SCI())
	}
}

// FuzzPM drives the block with arbitrary accesses and button presses: it
// never panics, and the SCI line always equals PWRBTN_STS & PWRBTN_EN &
// SCI_EN, changing only when it has to.
func FuzzPM(f *testing.F) {
	f.Add([]byte("\x02\x01\x01\x04\x00\x01\x00\x40\x00\x01\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		line, changes := false, 0
		p := New(func() {}, func(l bool) {
			if l == line {
				t.Fatalf("SCI driven to %v twice", l)
			}
			line = l
			changes++
		})
		for len(b) >= 3 {
			off := uint64(b[0] % Size)
			n := int(b[1]%4) + 1
			data := make([]byte, n)
			for i := range data {
				data[i] = b[2]
			}
			switch {
			case b[1]&0x40 != 0:
				p.mu.Lock()
				want := p.enable&pwrBtn != 0 && p.control&sciEn != 0
				p.mu.Unlock()
				if got := p.PowerButton(); got != want {
					t.Fatalf("PowerButton %v, want %v", got, want)
				}
			case b[1]&0x80 != 0:
				p.Read(off, data)
			default:
				p.Write(off, data)
			}
			b = b[3:]
			p.mu.Lock()
			want := p.status&p.enable&pwrBtn != 0 && p.control&sciEn != 0
			p.mu.Unlock()
			if line != want || p.SCI() != want {
				t.Fatalf("SCI line %v (reported %v), want %v", line, p.SCI(), want)
			}
		}
	})
}
