package gen1

import (
	"math"
	"testing"

	"github.com/partita-hv/partita/guestmem"
)

// TestPhysMem: DMA by guest physical address reaches RAM below the PCI
// hole and from 4 GiB, at the right offsets of the memory, and nothing
// else: the hole, past the end, across the hole or wrapping around.
func TestPhysMem(t *testing.T) {
	const size = 5 << 30 // 3.5 GiB low, 1.5 GiB from 4 GiB
	mem, err := guestmem.New("physmem", size)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	p := &Partition{cfg: Config{Memory: size}, mem: mem}
	m := physMem{p}
	for _, ok := range []struct{ gpa, n, off uint64 }{
		{0, 4096, 0},
		{pciHole - 512, 512, pciHole - 512},
		{fourGiB, 512, pciHole},
		{fourGiB + (size - pciHole) - 8, 8, size - 8},
	} {
		b, err := m.Slice(ok.gpa, ok.n)
		if err != nil || uint64(len(b)) != ok.n {
			t.Errorf("%#x+%#x: %v", ok.gpa, ok.n, err)
			continue
		}
		b[0] = 0x5A
		if mem.Bytes()[ok.off] != 0x5A {
			t.Errorf("%#x landed elsewhere than offset %#x", ok.gpa, ok.off)
		}
		b[0] = 0
	}
	for _, bad := range []struct{ gpa, n uint64 }{
		{pciHole, 1},                            // the hole
		{pciHole - 4, 8},                        // into the hole
		{fourGiB - 4, 8},                        // from the ROM into high RAM
		{fourGiB + (size - pciHole) - 4, 8},     // past the end
		{fourGiB + (size - pciHole), 1},         // the end
		{math.MaxUint64 - 3, 8},                 // wrapping
		{0, math.MaxUint64},                     // everything
		{fourGiB, math.MaxUint64 - fourGiB + 1}, // wrapping from high RAM
	} {
		if _, err := m.Slice(bad.gpa, bad.n); err == nil {
			t.Errorf("%#x+%#x accepted", bad.gpa, bad.n)
		}
	}
}
