package lapic

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"
)

type rig struct {
	a    *APIC
	mu   sync.Mutex
	ipis []IPI
	eois []uint8
	wake int
}

func newRig(bsp bool) *rig {
	r := &rig{}
	r.a = New(Config{ID: 2, BSP: bsp,
		SendIPI: func(p IPI) { r.mu.Lock(); r.ipis = append(r.ipis, p); r.mu.Unlock() },
		EOI:     func(v uint8) { r.mu.Lock(); r.eois = append(r.eois, v); r.mu.Unlock() },
		Changed: func() { r.mu.Lock(); r.wake++; r.mu.Unlock() }})
	return r
}

func (r *rig) write(reg uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	r.a.Write(reg, b[:])
}

func (r *rig) read(reg uint64) uint32 {
	var b [4]byte
	r.a.Read(reg, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func TestReset(t *testing.T) {
	r := newRig(false)
	for _, c := range []struct {
		reg  uint64
		want uint32
	}{{regID, 2 << 24}, {regVersion, 0x50014}, {regSVR, 0xFF}, {regDFR, 0xFFFFFFFF}, {regLVT + 3*0x10, lvtMasked}, {regTPR, 0}} {
		if got := r.read(c.reg); got != c.want {
			t.Errorf("register %#x: %#x, want %#x", c.reg, got, c.want)
		}
	}
	if r.a.AcceptsPIC() {
		t.Error("an AP's LINT0 takes the PIC at reset")
	}
	if !newRig(true).a.AcceptsPIC() {
		t.Error("the BSP's LINT0 does not take the PIC at reset (virtual wire)")
	}
}

func TestPriorityAndEOI(t *testing.T) {
	r := newRig(false)
	r.a.Accept(0x30, false)
	if _, ok := r.a.Pending(); ok {
		t.Fatal("a software-disabled APIC took an interrupt")
	}
	r.write(regSVR, svrEnabled|0xFF)
	r.a.Accept(0x30, false)
	if v, ok := r.a.Pending(); !ok || v != 0x30 {
		t.Fatalf("pending %#x %v", v, ok)
	}
	r.write(regTPR, 0x40)
	if _, ok := r.a.Pending(); ok {
		t.Error("TPR 0x40 let 0x30 through")
	}
	r.write(regTPR, 0x20)
	if v, ok := r.a.Acknowledge(); !ok || v != 0x30 {
		t.Fatalf("acknowledge %#x %v", v, ok)
	}
	if ppr := r.read(regPPR); ppr != 0x30 {
		t.Errorf("PPR %#x with 0x30 in service", ppr)
	}
	r.a.Accept(0x35, true) // same class: waits; level
	r.a.Accept(0x45, false)
	if v, _ := r.a.Acknowledge(); v != 0x45 {
		t.Errorf("took %#x, want 0x45 over 0x35", v)
	}
	r.write(regEOI, 0) // ends 0x45
	r.write(regEOI, 0) // ends 0x30
	if v, _ := r.a.Acknowledge(); v != 0x35 {
		t.Errorf("took %#x after two EOIs, want 0x35", v)
	}
	r.write(regEOI, 0)
	if len(r.eois) != 1 || r.eois[0] != 0x35 {
		t.Errorf("EOIs to the IOAPIC %#x, want only the level vector 0x35", r.eois)
	}
	r.a.Accept(7, false) // illegal
	if _, ok := r.a.Pending(); ok || r.read(regESR)&esrBadVec == 0 {
		t.Error("vector 7 accepted, or no error recorded")
	}
	// Disabling masks the LVT, and keeps it masked.
	r.write(regSVR, 0xFF)
	r.write(regLVT, 0x40)
	if r.read(regLVT)&lvtMasked == 0 {
		t.Error("an LVT write unmasked the timer of a disabled APIC")
	}
}

func TestICR(t *testing.T) {
	r := newRig(false)
	r.write(regICRHigh, 0x05000000)
	r.write(regICRLow, 0x000C4500) // INIT, assert, level, all excluding self
	r.write(regICRLow, 0x000C4699) // start-up at 0x99000
	r.write(regICRLow, 0x00004803) // fixed vector 3, logical: illegal, not sent
	want := []IPI{
		{From: 2, Dest: 5, Shorthand: ToAllButSelf, Mode: ModeINIT, Assert: true},
		{From: 2, Dest: 5, Shorthand: ToAllButSelf, Mode: ModeStartup, Vector: 0x99, Assert: true},
	}
	if len(r.ipis) != len(want) {
		t.Fatalf("IPIs %+v", r.ipis)
	}
	for i := range want {
		if r.ipis[i] != want[i] {
			t.Errorf("IPI %d: %+v, want %+v", i, r.ipis[i], want[i])
		}
	}
	if r.read(regICRLow)&(1<<12) != 0 {
		t.Error("delivery status busy")
	}
	r.write(regLDR, 0x04000000)
	if !r.a.MatchesLogical(0x0C) || r.a.MatchesLogical(0x08) {
		t.Error("flat logical destination match wrong")
	}
}

func TestTimer(t *testing.T) {
	r := newRig(false)
	r.write(regSVR, svrEnabled|0xFF)
	r.write(regDivide, 0xB)           // divide by 1
	r.write(regLVT, 0x50|lvtPeriodic) // periodic, vector 0x50
	r.write(regInitial, 2_000_000)    // 2 ms
	if c := r.read(regCurrent); c == 0 || c > 2_000_000 {
		t.Errorf("current count %d", c)
	}
	time.Sleep(60 * time.Millisecond)
	n := 0
	for {
		v, ok := r.a.Acknowledge()
		if !ok {
			break
		}
		if v != 0x50 {
			t.Fatalf("vector %#x", v)
		}
		n++
		r.write(regEOI, 0)
	}
	r.mu.Lock()
	wakes := r.wake
	r.mu.Unlock()
	if n != 1 || wakes < 10 {
		t.Errorf("after 60 ms of a 2 ms periodic timer: %d pending, %d expiries seen", n, wakes)
	}
	r.write(regInitial, 0)
	r.a.Close()
}

// FuzzLAPIC runs random register writes and reads, messages, EOIs and
// acknowledgements: no panic, nothing pending below vector 16.
func FuzzLAPIC(f *testing.F) {
	f.Add([]byte{1, 0xF0, 0xFF, 0x01, 0, 0, 2, 0x30, 3, 0, 1, 0xB0, 0, 0, 0, 0})
	f.Add([]byte{1, 0x30, 0x00, 0x45, 0x0C, 0x00, 1, 0x30, 0x99, 0x46, 0x0C, 0x00})
	f.Fuzz(func(t *testing.T, ops []byte) {
		a := New(Config{ID: 1, BSP: true, SendIPI: func(IPI) {}, EOI: func(uint8) {}, Changed: func() {}})
		defer a.Close()
		for len(ops) >= 2 {
			op, arg := ops[0], ops[1]
			ops = ops[2:]
			switch op % 4 {
			case 0:
				b := make([]byte, 1+int(arg)%4)
				a.Read(uint64(arg)<<4|uint64(op>>4), b)
			case 1:
				var v [4]byte
				n := copy(v[:], ops)
				ops = ops[n:]
				a.Write(uint64(arg)<<4, v[:])
			case 2:
				a.Accept(arg, op&0x10 != 0)
			case 3:
				if v, ok := a.Acknowledge(); ok && v < 16 {
					t.Fatalf("vector %d in service", v)
				}
			}
		}
	})
}
