package bus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// regs is a device with a small register file, recording offsets it saw.
type regs struct {
	mem  []byte
	offs []uint64
}

func (r *regs) Read(off uint64, data []byte) {
	r.offs = append(r.offs, off)
	copy(data, r.mem[off:])
}

func (r *regs) Write(off uint64, data []byte) {
	r.offs = append(r.offs, off)
	copy(r.mem[off:], data)
}

func TestRouting(t *testing.T) {
	b := New("pio")
	com1 := &regs{mem: make([]byte, 8)}
	cmos := &regs{mem: make([]byte, 2)}
	if err := b.Register("com1", 0x3F8, 8, com1); err != nil {
		t.Fatal(err)
	}
	if err := b.Register("cmos", 0x70, 2, cmos); err != nil {
		t.Fatal(err)
	}
	b.Write(0x3FB, []byte{0x83})
	if com1.mem[3] != 0x83 || com1.offs[0] != 3 {
		t.Errorf("write routed to offset %v, regs % x", com1.offs, com1.mem)
	}
	d := make([]byte, 2)
	b.Read(0x70, d)
	if cmos.offs[0] != 0 {
		t.Errorf("cmos saw offset %v", cmos.offs)
	}
	// Nothing at 0x80; an access running past a device's end is not its.
	for _, c := range []struct {
		addr uint64
		n    int
	}{{0x80, 1}, {0x3FF, 2}, {0x6F, 2}, {0, 4}} {
		d := make([]byte, c.n)
		b.Read(c.addr, d)
		if !bytes.Equal(d, bytes.Repeat([]byte{0xFF}, c.n)) {
			t.Errorf("read %#x/%d = % x, want all ones", c.addr, c.n, d)
		}
		b.Write(c.addr, d)
	}
	if st := b.Stats(); st.UnhandledReads != 4 || st.UnhandledWrites != 4 || st.Reads != 5 || st.Writes != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestOverlapRefused(t *testing.T) {
	b := New("mmio")
	dev := &regs{mem: make([]byte, 0x1000)}
	if err := b.Register("a", 0x1000, 0x1000, dev); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ base, size uint64 }{
		{0x1000, 1}, {0xFFF, 2}, {0x1FFF, 1}, {0x800, 0x1000}, {0, 0x10000},
	} {
		if err := b.Register("b", c.base, c.size, dev); !errors.Is(err, ErrOverlap) {
			t.Errorf("%#x+%#x: %v", c.base, c.size, err)
		}
	}
	for _, c := range []struct{ base, size uint64 }{{0, 0}, {^uint64(0), 2}} {
		if err := b.Register("bad", c.base, c.size, dev); err == nil {
			t.Errorf("range %#x+%#x accepted", c.base, c.size)
		}
	}
	if err := b.Register("c", 0x2000, 0x10, dev); err != nil {
		t.Errorf("adjacent range refused: %v", err)
	}
	if err := b.Register("d", 0xFF0, 0x10, dev); err != nil {
		t.Errorf("adjacent range below refused: %v", err)
	}
	if err := b.Unregister(0x1000); err != nil {
		t.Fatal(err)
	}
	if err := b.Register("b", 0x1800, 8, dev); err != nil {
		t.Errorf("after unregister: %v", err)
	}
}

// FuzzBus registers devices and performs accesses from fuzz input: the bus
// never panics and only ever calls a device with an in-range access.
func FuzzBus(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		bus := New("fuzz")
		var devs []*checked
		for len(b) >= 6 && len(devs) < 8 {
			base := uint64(binary.LittleEndian.Uint16(b))
			size := uint64(b[2]) + 1
			d := &checked{t: t, size: size}
			if bus.Register("d", base, size, d) == nil {
				devs = append(devs, d)
			}
			b = b[3:]
			if b[0]&1 == 0 {
				break
			}
		}
		for len(b) >= 4 {
			addr := uint64(binary.LittleEndian.Uint16(b))
			n := int(b[2]%8) + 1
			data := make([]byte, n)
			if b[3]&1 == 0 {
				bus.Read(addr, data)
			} else {
				bus.Write(addr, data)
			}
			b = b[4:]
		}
	})
}

type checked struct {
	t    *testing.T
	size uint64
}

func (c *checked) Read(off uint64, data []byte) { c.check(off, data) }

func (c *checked) Write(off uint64, data []byte) { c.check(off, data) }

func (c *checked) check(off uint64, data []byte) {
	if off >= c.size || uint64(len(data)) > c.size-off {
		c.t.Fatalf("access %#x/%d to a device of %d bytes", off, len(data), c.size)
	}
}
