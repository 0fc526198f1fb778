package smbios

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

// parsed is one structure read back.
type parsed struct {
	typ       byte
	handle    uint16
	formatted []byte
	strs      []string
}

// parse walks a structure table as firmware and OSes do.
func parse(t *testing.T, table []byte) []parsed {
	t.Helper()
	var out []parsed
	for off := 0; off < len(table); {
		if len(table)-off < 4 {
			t.Fatalf("partial header at %d", off)
		}
		n := int(table[off+1])
		if n < 4 || off+n > len(table) {
			t.Fatalf("structure at %d: length %d", off, n)
		}
		p := parsed{typ: table[off], handle: binary.LittleEndian.Uint16(table[off+2:]), formatted: table[off : off+n]}
		rest := table[off+n:]
		end := bytes.Index(rest, []byte{0, 0})
		if end < 0 {
			t.Fatalf("structure at %d: no double NUL", off)
		}
		if end > 0 {
			for _, s := range bytes.Split(rest[:end], []byte{0}) {
				p.strs = append(p.strs, string(s))
			}
		}
		out = append(out, p)
		off += n + end + 2
	}
	return out
}

func TestBuild(t *testing.T) {
	m := Machine{Manufacturer: "Partita", Product: "Virtual Machine", Version: "1", Serial: "web1",
		UUID:       [16]byte{0x16, 0xD1, 0xEF, 0x0B, 0x91, 0xFC, 0x4C, 0xFE, 0x89, 0xB7, 0x73, 0x6F, 0x3D, 0x4C, 0x36, 0x61},
		Processors: 2, RAM: []Range{{0, 64 << 20}}, CPUID: 0x0178BFBF_00A00F11}
	ep, table, err := Build(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(ep) != EntryPointSize || string(ep[:4]) != "_SM_" || string(ep[0x10:0x15]) != "_DMI_" {
		t.Fatalf("entry point % x", ep)
	}
	if sum(ep) != 0 || sum(ep[0x10:]) != 0 {
		t.Fatal("entry point checksums do not add up to 0")
	}
	if int(binary.LittleEndian.Uint16(ep[0x16:])) != len(table) {
		t.Fatal("table length in the entry point is wrong")
	}
	ss := parse(t, table)
	if int(binary.LittleEndian.Uint16(ep[0x1C:])) != len(ss) {
		t.Fatalf("entry point counts %d structures, table has %d", binary.LittleEndian.Uint16(ep[0x1C:]), len(ss))
	}
	var types []byte
	handles := map[uint16]bool{}
	maxSize := 0
	for _, s := range ss {
		types = append(types, s.typ)
		if handles[s.handle] {
			t.Errorf("handle %#x twice", s.handle)
		}
		handles[s.handle] = true
		size := len(s.formatted) + 2
		for _, str := range s.strs {
			size += len(str) + 1
		}
		if len(s.strs) > 0 {
			size--
		}
		maxSize = max(maxSize, size)
	}
	if want := []byte{1, 3, 4, 4, 16, 17, 19, 32, 127}; !bytes.Equal(types, want) {
		t.Fatalf("types %v, want %v", types, want)
	}
	if int(binary.LittleEndian.Uint16(ep[8:])) != maxSize {
		t.Errorf("max structure size %d, measured %d", binary.LittleEndian.Uint16(ep[8:]), maxSize)
	}
	sys := ss[0]
	if len(sys.formatted) != 0x1B || sys.strs[sys.formatted[4]-1] != "Partita" || sys.strs[sys.formatted[5]-1] != "Virtual Machine" ||
		sys.strs[sys.formatted[7]-1] != "web1" {
		t.Fatalf("type 1: % x %q", sys.formatted, sys.strs)
	}
	if got := sys.formatted[8:24]; !bytes.Equal(got, []byte{0x0B, 0xEF, 0xD1, 0x16, 0xFC, 0x91, 0xFE, 0x4C, 0x89, 0xB7, 0x73, 0x6F, 0x3D, 0x4C, 0x36, 0x61}) {
		t.Errorf("UUID bytes % x", got)
	}
	lengths := map[byte]int{3: 0x15, 4: 0x23, 16: 0x0F, 17: 0x1B, 19: 0x0F, 32: 0x0B, 127: 4}
	for _, s := range ss[1:] {
		if len(s.formatted) != lengths[s.typ] {
			t.Errorf("type %d: length %#x, want %#x", s.typ, len(s.formatted), lengths[s.typ])
		}
	}
	if mem := ss[5]; binary.LittleEndian.Uint16(mem.formatted[0x0C:]) != 64 {
		t.Errorf("type 17 size %d MiB", binary.LittleEndian.Uint16(mem.formatted[0x0C:]))
	}
	if m := ss[6]; binary.LittleEndian.Uint32(m.formatted[8:]) != 64<<10-1 {
		t.Errorf("type 19 end %#x", binary.LittleEndian.Uint32(m.formatted[8:]))
	}
	if cpu := ss[3]; cpu.strs[0] != "CPU 1" || binary.LittleEndian.Uint64(cpu.formatted[8:]) != m.CPUID {
		t.Errorf("type 4: %q % x", cpu.strs, cpu.formatted)
	}
}

// TestBuildLargeMemory: 64 GiB split around a 3.5 GiB PCI hole is four
// 16 GiB devices and two mapped ranges, as QEMU describes it.
func TestBuildLargeMemory(t *testing.T) {
	const low = 0xE000_0000
	_, table, err := Build(Machine{Processors: 1, RAM: []Range{{0, low}, {1 << 32, 64<<30 - low}}})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []uint16
	var ranges [][2]uint32
	for _, s := range parse(t, table) {
		switch s.typ {
		case 16:
			if c := binary.LittleEndian.Uint32(s.formatted[7:]); c != 64<<20 {
				t.Errorf("type 16 capacity %d KiB", c)
			}
		case 17:
			sizes = append(sizes, binary.LittleEndian.Uint16(s.formatted[0x0C:]))
		case 19:
			ranges = append(ranges, [2]uint32{binary.LittleEndian.Uint32(s.formatted[4:]), binary.LittleEndian.Uint32(s.formatted[8:])})
		}
	}
	if want := []uint16{16384, 16384, 16384, 16384}; !slices.Equal(sizes, want) {
		t.Errorf("type 17 sizes %v MiB, want %v", sizes, want)
	}
	if want := [][2]uint32{{0, low>>10 - 1}, {1 << 22, 64<<20 + (1<<22 - low>>10) - 1}}; !slices.Equal(ranges, want) {
		t.Errorf("type 19 ranges %#x KiB, want %#x", ranges, want)
	}
}

func TestBuildRefuses(t *testing.T) {
	for _, m := range []Machine{{Processors: 0, RAM: []Range{{0, 1 << 20}}}, {Processors: 1}, {Processors: 1, RAM: []Range{{0, 2 << 40}}},
		{Processors: 1, RAM: []Range{{0, 1<<20 + 1}}}, {Processors: 1, RAM: []Range{{0, 512 << 10}}}} {
		if _, _, err := Build(m); err == nil {
			t.Errorf("%+v accepted", m)
		}
	}
	// NULs in strings cannot break the string set.
	_, table, err := Build(Machine{Manufacturer: "a\x00b", Processors: 1, RAM: []Range{{0, 1 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	if ss := parse(t, table); ss[0].strs[0] != "ab" {
		t.Errorf("strings %q", ss[0].strs)
	}
}
