package elf

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// build makes a minimal executable with the given segments.
func build(entry uint64, segs ...Segment) []byte {
	le := binary.LittleEndian
	b := make([]byte, 64+56*len(segs))
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 2)
	le.PutUint16(b[18:], 62)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], entry)
	le.PutUint64(b[32:], 64)
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], uint16(len(segs)))
	for i, s := range segs {
		ph := b[64+56*i:]
		le.PutUint32(ph, ptLoad)
		le.PutUint32(ph[4:], s.Flags)
		le.PutUint64(ph[8:], s.Offset)
		le.PutUint64(ph[16:], s.Vaddr)
		le.PutUint64(ph[24:], s.Vaddr)
		le.PutUint64(ph[32:], s.Filesz)
		le.PutUint64(ph[40:], s.Memsz)
		le.PutUint64(ph[48:], 0x1000)
	}
	return b
}

func TestParse(t *testing.T) {
	good := build(0x401000,
		Segment{Vaddr: 0x400000, Memsz: 0x1000, Offset: 0, Filesz: 0xe8, Flags: 4},
		Segment{Vaddr: 0x401000, Memsz: 0x1000, Offset: 0, Filesz: 0x10, Flags: 5},
		Segment{Vaddr: 0x402000, Memsz: 0x3000, Offset: 0, Filesz: 0x10, Flags: 6})
	x, err := Parse(good, 0x200000, 0x1000000)
	if err != nil {
		t.Fatal(err)
	}
	if x.Entry != 0x401000 || len(x.Segments) != 3 || x.PhdrAddr != 0x400040 {
		t.Fatalf("%+v", x)
	}
	for name, b := range map[string][]byte{
		"empty":           nil,
		"entry not in X":  build(0x402000, Segment{Vaddr: 0x401000, Memsz: 0x1000, Flags: 5}, Segment{Vaddr: 0x402000, Memsz: 0x1000, Flags: 6}),
		"below the floor": build(0x1000, Segment{Vaddr: 0x1000, Memsz: 0x1000, Flags: 5}),
		"beyond the top":  build(0xfff000, Segment{Vaddr: 0xfff000, Memsz: 0x2000, Flags: 5}),
		"wrapping":        build(0x401000, Segment{Vaddr: 0x401000, Memsz: ^uint64(0), Flags: 5}),
		"overlap":         build(0x401000, Segment{Vaddr: 0x401000, Memsz: 0x2000, Flags: 5}, Segment{Vaddr: 0x402000, Memsz: 0x1000, Flags: 6}),
		"file past EOF":   build(0x401000, Segment{Vaddr: 0x401000, Memsz: 0x2000, Offset: 0, Filesz: 0x2000, Flags: 5}),
		"filesz > memsz":  build(0x401000, Segment{Vaddr: 0x401000, Memsz: 0x10, Filesz: 0x20, Flags: 5}),
		"offset past EOF": build(0x401000, Segment{Vaddr: 0x401000, Memsz: 0x1000, Offset: 1 << 40, Filesz: 1, Flags: 5}),
		"no segments":     build(0x401000),
	} {
		if _, err := Parse(b, 0x200000, 0x1000000); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v", name, err)
		}
	}
	dyn := build(0x401000, Segment{Vaddr: 0x401000, Memsz: 0x1000, Flags: 5})
	binary.LittleEndian.PutUint32(dyn[64:], ptInterp)
	if _, err := Parse(dyn, 0x200000, 0x1000000); !errors.Is(err, ErrFormat) {
		t.Errorf("dynamic executable accepted: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/fuzz/*.elf")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(build(0x401000, Segment{Vaddr: 0x401000, Memsz: 0x1000, Flags: 5}))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := Parse(b, 0x200000, 0x4000000)
		if err != nil {
			return
		}
		for _, s := range x.Segments {
			if s.Vaddr < 0x200000 || s.Vaddr+s.Memsz > 0x4000000 || s.Offset+s.Filesz > uint64(len(b)) {
				t.Fatalf("accepted a segment out of bounds: %+v", s)
			}
		}
	})
}
