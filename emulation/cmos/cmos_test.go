package cmos

import (
	"sync"
	"testing"
	"time"
)

// fakeClock stands in for the host clock: it only moves when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// rig is a CMOS on a fake clock with its IRQ line captured.
type rig struct {
	t     *testing.T
	c     *CMOS
	clock *fakeClock
	mu    sync.Mutex
	level bool
	calls int
}

// monday is 2026-11-23 07:50:09, a Monday.
var monday = time.Date(2026, time.November, 23, 7, 50, 9, 0, time.UTC)

func newRig(t *testing.T, start time.Time, mem uint64) *rig {
	r := &rig{t: t, clock: &fakeClock{t: start}}
	r.c = New(Config{Memory: mem, Now: r.clock.now, IRQ: func(level bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if level == r.level {
			t.Errorf("irq(%v) called without a level change", level)
		}
		r.level = level
		r.calls++
	}})
	t.Cleanup(r.c.Close)
	return r
}

func (r *rig) read(idx uint8) uint8 {
	r.c.Write(0, []byte{idx})
	var b [1]byte
	r.c.Read(1, b[:])
	return b[0]
}

func (r *rig) write(idx, v uint8) { r.c.Write(0, []byte{idx, v}) }

func (r *rig) irq() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.level
}

// seabiosRamSize computes RamSize as SeaBIOS's qemu_preinit does from the
// CMOS when fw_cfg gives none.
func seabiosRamSize(r *rig) uint64 {
	rs := uint64(r.read(0x34))<<16 | uint64(r.read(0x35))<<24
	if rs != 0 {
		return rs + 16<<20
	}
	return (uint64(r.read(0x30))<<10 | uint64(r.read(0x31))<<18) + 1<<20
}

func TestMemorySizes(t *testing.T) {
	for _, mem := range []uint64{16 << 20, 64 << 20, 3584 << 20} {
		r := newRig(t, monday, mem)
		if got := seabiosRamSize(r); got != mem {
			t.Errorf("memory %#x: SeaBIOS RamSize %#x", mem, got)
		}
		if base := uint16(r.read(0x15)) | uint16(r.read(0x16))<<8; base != 640 {
			t.Errorf("memory %#x: base memory %d KiB, want 640", mem, base)
		}
		ext := uint64(r.read(0x17)) | uint64(r.read(0x18))<<8
		if want := min((mem-1<<20)>>10, 0xFFFF); ext != want {
			t.Errorf("memory %#x: 0x17/0x18 = %#x, want %#x", mem, ext, want)
		}
		for i := uint8(0x5B); i <= 0x5D; i++ {
			if v := r.read(i); v != 0 {
				t.Errorf("memory %#x: byte %#x = %#x, want 0", mem, i, v)
			}
		}
	}
	// 16 MiB has nothing above 16 MiB: SeaBIOS must take the 0x30/0x31 path.
	r := newRig(t, monday, 16<<20)
	if r.read(0x34) != 0 || r.read(0x35) != 0 {
		t.Error("16 MiB: 0x34/0x35 not zero")
	}
	// Caps.
	r = newRig(t, monday, 8<<30)
	if r.read(0x34) != 0xFF || r.read(0x35) != 0xFF || r.read(0x30) != 0xFF || r.read(0x31) != 0xFF {
		t.Error("8 GiB: memory-size bytes not capped at 0xFFFF")
	}
}

// TestHighMemory: RAM from 4 GiB up is in bytes 0x5B-0x5D in 64 KiB
// units, as SeaBIOS reads it (RamSizeOver4G) when fw_cfg has no e820 map.
func TestHighMemory(t *testing.T) {
	for _, high := range []uint64{0, 64 << 10, 1 << 30, 60<<30 + 512<<20, 1 << 40} {
		c := New(Config{Memory: 3584 << 20, HighMemory: high})
		read := func(i uint8) uint64 {
			var b [1]byte
			c.Write(0, []byte{i})
			c.Read(1, b[:])
			return uint64(b[0])
		}
		got := (read(0x5B) | read(0x5C)<<8 | read(0x5D)<<16) << 16
		if want := min(high, 0xFFFFFF<<16); got != want { // three bytes: capped
			t.Errorf("high memory %#x: bytes 0x5b-0x5d say %#x, want %#x", high, got, want)
		}
		c.Close()
	}
}

func TestClockModes(t *testing.T) {
	if monday.Weekday() != time.Monday {
		t.Fatalf("test date is a %v", monday.Weekday())
	}
	regs := []uint8{regSeconds, regMinutes, regHours, regDayOfWeek, regDayOfMonth, regMonth, regYear, regCentury}
	for _, tc := range []struct {
		name string
		at   time.Time
		b    uint8
		want []uint8
	}{
		{"bcd 24h", monday, 0x02, []uint8{0x09, 0x50, 0x07, 2, 0x23, 0x11, 0x26, 0x20}},
		{"binary 24h", monday, 0x06, []uint8{9, 50, 7, 2, 23, 11, 26, 20}},
		{"bcd 12h am", monday, 0x00, []uint8{0x09, 0x50, 0x07, 2, 0x23, 0x11, 0x26, 0x20}},
		{"binary 12h am", monday, 0x04, []uint8{9, 50, 7, 2, 23, 11, 26, 20}},
		{"bcd 24h pm", monday.Add(12 * time.Hour), 0x02, []uint8{0x09, 0x50, 0x19, 2, 0x23, 0x11, 0x26, 0x20}},
		{"bcd 12h pm", monday.Add(12 * time.Hour), 0x00, []uint8{0x09, 0x50, 0x87, 2, 0x23, 0x11, 0x26, 0x20}},
		{"binary 12h pm", monday.Add(12 * time.Hour), 0x04, []uint8{9, 50, 0x87, 2, 23, 11, 26, 20}},
		{"bcd 12h noon", monday.Add(4*time.Hour + 10*time.Minute), 0x00, []uint8{0x09, 0x00, 0x92, 2, 0x23, 0x11, 0x26, 0x20}},
		{"bcd 12h midnight", monday.Add(-7*time.Hour - 50*time.Minute), 0x00, []uint8{0x09, 0x00, 0x12, 2, 0x23, 0x11, 0x26, 0x20}},
		{"binary 12h midnight", monday.Add(-7*time.Hour - 50*time.Minute), 0x04, []uint8{9, 0, 12, 2, 23, 11, 26, 20}},
	} {
		r := newRig(t, tc.at, 0)
		r.write(regB, tc.b)
		for i, idx := range regs {
			if got := r.read(idx); got != tc.want[i] {
				t.Errorf("%s: register %#02x = %#02x, want %#02x", tc.name, idx, got, tc.want[i])
			}
		}
	}
}

func TestClockRuns(t *testing.T) {
	r := newRig(t, monday, 0)
	r.clock.advance(61 * time.Second)
	if s, m := r.read(regSeconds), r.read(regMinutes); s != 0x10 || m != 0x51 {
		t.Errorf("after 61 s: %02x:%02x, want 51:10", m, s)
	}
}

func TestGuestSetsTime(t *testing.T) {
	r := newRig(t, monday, 0)
	r.write(regB, 0x82|bUIE) // SET, 24h BCD; SET clears UIE
	if b := r.read(regB); b != 0x82 {
		t.Errorf("register B = %#02x after SET|UIE, want 0x82", b)
	}
	for _, w := range [][2]uint8{{regSeconds, 0x05}, {regMinutes, 0x04}, {regHours, 0x03}, {regDayOfMonth, 0x02}, {regMonth, 0x01}, {regYear, 0x30}, {regCentury, 0x20}} {
		r.write(w[0], w[1])
	}
	r.clock.advance(10 * time.Second) // updates are inhibited while SET is set
	if s := r.read(regSeconds); s != 0x05 {
		t.Errorf("seconds moved while SET: %#02x", s)
	}
	if a := r.read(regA); a&aUIP != 0 {
		t.Error("UIP set while SET")
	}
	r.write(regB, 0x02)
	r.clock.advance(90 * time.Second)
	want := map[uint8]uint8{regSeconds: 0x35, regMinutes: 0x05, regHours: 0x03, regDayOfWeek: 4, regDayOfMonth: 0x02, regMonth: 0x01, regYear: 0x30, regCentury: 0x20}
	for idx, w := range want {
		if got := r.read(idx); got != w {
			t.Errorf("register %#02x = %#02x, want %#02x", idx, got, w)
		}
	}
	if s := r.c.Stats(); s.TimeSets != 1 {
		t.Errorf("TimeSets = %d, want 1", s.TimeSets)
	}

	// Without SET, a write changes the running clock at once: binary
	// 12-hour, 11 PM.
	r.write(regB, 0x04)
	r.write(regHours, 0x80|11)
	r.clock.advance(time.Second)
	r.write(regB, 0x06)
	if h, s := r.read(regHours), r.read(regSeconds); h != 23 || s != 36 {
		t.Errorf("after setting 11 PM: hour %d second %d, want 23 and 36", h, s)
	}
}

func TestRegisterCClearsOnRead(t *testing.T) {
	r := newRig(t, monday, 0)
	r.read(regC)
	r.write(regB, 0x02|bUIE)
	r.clock.advance(time.Second)
	r.c.Tick()
	if !r.irq() {
		t.Fatal("no interrupt after an update with UIE")
	}
	if c := r.read(regC); c != cIRQF|cUF {
		t.Errorf("register C = %#02x, want %#02x", c, cIRQF|cUF)
	}
	if r.irq() {
		t.Error("reading register C left IRQ 8 high")
	}
	if c := r.read(regC); c != 0 {
		t.Errorf("register C = %#02x on second read, want 0", c)
	}
	// UF without UIE sets no IRQF and raises nothing.
	r.write(regB, 0x02)
	r.clock.advance(time.Second)
	if c := r.read(regC); c != cUF {
		t.Errorf("register C = %#02x without UIE, want %#02x", c, cUF)
	}
	if r.calls != 2 {
		t.Errorf("irq called %d times, want 2", r.calls)
	}
	if s := r.c.Stats(); s.Interrupts != 1 {
		t.Errorf("Interrupts = %d, want 1", s.Interrupts)
	}
}

func TestAlarm(t *testing.T) {
	r := newRig(t, monday, 0)
	r.write(regSecondsAlarm, 0x11)
	r.write(regMinutesAlarm, 0xC0) // don't care
	r.write(regHoursAlarm, 0xFF)   // don't care
	r.write(regB, 0x02|bAIE)
	r.read(regC)
	r.clock.advance(time.Second) // 07:50:10
	r.c.Tick()
	if r.irq() {
		t.Error("alarm fired at :10")
	}
	r.clock.advance(time.Second) // 07:50:11
	r.c.Tick()
	if !r.irq() {
		t.Error("alarm did not fire at :11")
	}
	if c := r.read(regC); c != cIRQF|cAF|cUF {
		t.Errorf("register C = %#02x, want %#02x", c, cIRQF|cAF|cUF)
	}
}

func TestUIPFalls(t *testing.T) {
	r := newRig(t, monday.Add(time.Second-time.Millisecond), 0)
	if a := r.read(regA); a != resetA|aUIP {
		t.Errorf("register A = %#02x 1 ms before the update, want %#02x", a, resetA|aUIP)
	}
	r.clock.advance(2 * time.Millisecond)
	if a := r.read(regA); a != resetA {
		t.Errorf("register A = %#02x after the update, want %#02x", a, resetA)
	}
	if s := r.read(regSeconds); s != 0x10 {
		t.Errorf("seconds = %#02x after the update, want 0x10", s)
	}
	r.write(regA, 0xFF) // UIP is read-only
	if a := r.read(regA); a != 0x7F {
		t.Errorf("register A = %#02x after writing 0xff, want 0x7f", a)
	}

	// On the real clock, a guest polling UIP sees it clear within a second.
	c := New(Config{})
	defer c.Close()
	deadline := time.Now().Add(time.Second)
	var b [1]byte
	for {
		c.Write(0, []byte{regA})
		c.Read(1, b[:])
		if b[0]&aUIP == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("UIP did not fall within a second")
		}
	}
}

func TestUpdateTimer(t *testing.T) {
	got := make(chan bool, 4)
	c := New(Config{IRQ: func(level bool) {
		select {
		case got <- level:
		default:
		}
	}})
	defer c.Close()
	c.Write(0, []byte{regB, 0x02 | bUIE})
	select {
	case level := <-got:
		if !level {
			t.Fatal("first IRQ change lowered the line")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no update interrupt within 3 s")
	}
}

func TestIndexPortAndNMI(t *testing.T) {
	r := newRig(t, monday, 0)
	r.write(0x40, 0xA5)
	r.c.Write(0, []byte{0x80 | 0x40})
	if !r.c.NMIDisabled() {
		t.Error("NMI bit not recorded")
	}
	var b [1]byte
	r.c.Read(1, b[:])
	if b[0] != 0xA5 {
		t.Errorf("index 0xc0 read %#02x, want register 0x40's 0xa5", b[0])
	}
	r.c.Write(0, []byte{0x40})
	if r.c.NMIDisabled() {
		t.Error("NMI bit stuck")
	}
	// Wide accesses go byte by byte; the index port reads 0xFF, as does
	// anything past the data port.
	r.c.Write(0, []byte{0x41, 0x5A})
	wide := make([]byte, 4)
	r.c.Read(0, wide)
	if wide[0] != 0xFF || wide[1] != 0x5A || wide[2] != 0xFF || wide[3] != 0xFF {
		t.Errorf("wide read % x, want ff 5a ff ff", wide)
	}
	if d := r.read(regD); d != dVRT {
		t.Errorf("register D = %#02x, want 0x80", d)
	}
	r.write(regD, 0)
	if d := r.read(regD); d != dVRT {
		t.Errorf("register D = %#02x after a write, want 0x80", d)
	}
}

func TestChecksum(t *testing.T) {
	r := newRig(t, monday, 64<<20)
	check := func(what string) {
		t.Helper()
		var sum uint16
		for i := uint8(0x10); i <= 0x2D; i++ {
			sum += uint16(r.read(i))
		}
		if got := uint16(r.read(0x2E))<<8 | uint16(r.read(0x2F)); got != sum {
			t.Errorf("%s: checksum %#04x, want %#04x", what, got, sum)
		}
	}
	check("initial")
	if r.read(regEquipment) != defaultEquipment || r.read(regFloppy) != 0 {
		t.Error("equipment or floppy byte wrong")
	}
	r.c.SetByte(0x3D, 0x02) // boot order: outside the checksum
	r.c.SetByte(0x10, 0x40) // a 1.44 MB drive A:
	r.c.SetByte(0x14, 0x07)
	check("after SetByte")
	if r.read(0x3D) != 0x02 || r.read(0x10) != 0x40 {
		t.Error("SetByte did not store")
	}
	r.c.SetByte(regB, 0xFF) // not NVRAM: ignored
	if r.read(regB) != resetB {
		t.Error("SetByte changed register B")
	}
}

func FuzzCMOS(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzCMOS. Each operation is an opcode byte
	// (taken mod 6) and an operand byte; a wide write takes a third byte.
	f.Fuzz(func(t *testing.T, data []byte) {
		clock := &fakeClock{t: monday}
		var mu sync.Mutex // the update timer may call too
		var level, called bool
		c := New(Config{Memory: 256 << 20, Now: clock.now, IRQ: func(l bool) {
			mu.Lock()
			defer mu.Unlock()
			if called && l == level {
				t.Errorf("irq(%v) without a level change", l)
			}
			if !called && !l {
				t.Error("first irq call lowers a line that was never raised")
			}
			level, called = l, true
		}})
		defer c.Close()
		var want [128]byte
		for i := range want {
			want[i] = c.ram[i]
		}
		var index uint8
		for len(data) >= 2 {
			op, arg := data[0], data[1]
			data = data[2:]
			switch op % 6 {
			case 0:
				c.Write(0, []byte{arg})
				index = arg & indexMask
			case 1:
				c.Write(1, []byte{arg})
				want[index] = arg
			case 2:
				var b [1]byte
				c.Read(1, b[:])
				if index >= 0x0E && index != regCentury && b[0] != want[index] {
					t.Fatalf("register %#02x read %#02x, want %#02x", index, b[0], want[index])
				}
			case 3:
				buf := make([]byte, op>>4%4+1)
				c.Read(uint64(arg%3), buf)
			case 4:
				clock.advance(time.Duration(arg) * time.Duration(op) * time.Millisecond)
				c.Tick()
			case 5:
				// A wide write: index arg, then the next fuzz byte as data.
				if len(data) == 0 {
					break
				}
				v := data[0]
				data = data[1:]
				c.Write(0, []byte{arg, v})
				index = arg & indexMask
				want[index] = v
			}
		}
	})
}

// TestPeriodicInterrupt enables PIE at 1024 Hz (rate 6, SeaBIOS's choice
// for INT 15h AH=86h): IRQ 8 rises, reading register C lowers it and it
// rises again; clearing PIE stops the ticks.
func TestPeriodicInterrupt(t *testing.T) {
	var mu sync.Mutex
	var rises int
	var level bool
	c := New(Config{Memory: 64 << 20, IRQ: func(l bool) {
		mu.Lock()
		defer mu.Unlock()
		if l && !level {
			rises++
		}
		level = l
	}})
	defer c.Close()
	reg := func(i, v byte) { c.Write(0, []byte{i}); c.Write(1, []byte{v}) }
	readC := func() byte {
		c.Write(0, []byte{0x0C})
		var b [1]byte
		c.Read(1, b[:])
		return b[0]
	}
	reg(0x0A, 0x26)      // 32.768 kHz time base, rate 6: 1024 Hz
	reg(0x0B, 0x02|0x40) // 24-hour, PIE
	deadline := time.Now().Add(2 * time.Second)
	for got := 0; got < 20 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
		if v := readC(); v&0xC0 == 0xC0 { // IRQF and PF
			got++
		}
		mu.Lock()
		if got >= 20 && rises < 10 {
			t.Errorf("only %d IRQ 8 edges for %d periods", rises, got)
		}
		mu.Unlock()
	}
	mu.Lock()
	if rises < 10 {
		t.Fatalf("%d IRQ 8 edges in 2 s at 1024 Hz", rises)
	}
	mu.Unlock()
	reg(0x0B, 0x02) // PIE off
	readC()
	time.Sleep(20 * time.Millisecond)
	if v := readC(); v&0x40 != 0 {
		t.Errorf("PF set %#x after PIE was cleared", v)
	}
}
