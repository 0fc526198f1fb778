package fwcfg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
)

// sel writes key to the selector as a 16-bit access, as SeaBIOS's outw.
func sel(d *Device, key uint16) { d.Write(0, binary.LittleEndian.AppendUint16(nil, key)) }

// read reads n bytes from the data port, one inb each.
func read(d *Device, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		d.Read(1, b[i:i+1])
	}
	return b
}

// Files used by several tests, added in this order: sercon gets key 0x20
// and e820 key 0x21, but the directory lists etc/e820 first.
var (
	serconData = []byte{0xF8, 0x03, 0, 0, 0, 0, 0, 0}
	e820Data   = []byte{
		0, 0, 0, 0, 0, 0, 0, 0, // address 0
		0, 0, 0, 4, 0, 0, 0, 0, // length 64 MiB
		1, 0, 0, 0, // E820RAM
	}
)

func name56(s string) []byte { return append([]byte(s), make([]byte, 56-len(s))...) }

// goldenDir is the directory for the two files above, written out field
// by field from the spec's struct FWCfgFiles.
var goldenDir = bytes.Join([][]byte{
	{0, 0, 0, 2}, // count, big-endian
	{0, 0, 0, 20}, {0x00, 0x21}, {0, 0}, name56("etc/e820"),
	{0, 0, 0, 8}, {0x00, 0x20}, {0, 0}, name56("etc/sercon-port"),
}, nil)

func withFiles(t testing.TB) *Device {
	d := New()
	if err := d.AddFile("etc/sercon-port", serconData); err != nil {
		t.Fatal(err)
	}
	if err := d.AddFile("etc/e820", e820Data); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSignature(t *testing.T) {
	d := New()
	// Reset state: the signature is already selected.
	if got := read(d, 2); !bytes.Equal(got, []byte("QE")) {
		t.Errorf("at reset % x", got)
	}
	sel(d, KeySignature)
	if got := read(d, 6); !bytes.Equal(got, []byte("QEMU\x00\x00")) {
		t.Errorf("signature % x", got)
	}
}

func TestID(t *testing.T) {
	d := New()
	sel(d, KeyID)
	got := read(d, 5)
	if !bytes.Equal(got, []byte{1, 0, 0, 0, 0}) {
		t.Errorf("features % x: want traditional interface only, no DMA", got)
	}
}

func TestRAMSize(t *testing.T) {
	d := New()
	if err := d.AddItem(KeyRAMSize, binary.LittleEndian.AppendUint64(nil, 0x1_2345_6000)); err != nil {
		t.Fatal(err)
	}
	sel(d, KeyRAMSize)
	if got := read(d, 8); !bytes.Equal(got, []byte{0x00, 0x60, 0x45, 0x23, 0x01, 0, 0, 0}) {
		t.Errorf("ram size % x", got)
	}
}

func TestFileDirectory(t *testing.T) {
	d := withFiles(t)
	sel(d, KeyFileDir)
	if got := read(d, len(goldenDir)+4); !bytes.Equal(got, append(goldenDir, 0, 0, 0, 0)) {
		t.Errorf("directory\n got % x\nwant % x", got, goldenDir)
	}
	// Each file by the key the directory gives.
	for _, f := range []struct {
		key  uint16
		want []byte
	}{{0x21, e820Data}, {0x20, serconData}} {
		sel(d, f.key)
		if got := read(d, len(f.want)+1); !bytes.Equal(got, append(f.want, 0)) {
			t.Errorf("key %#x: % x", f.key, got)
		}
	}
}

func TestEmptyDirectory(t *testing.T) {
	d := New()
	sel(d, KeyFileDir)
	if got := read(d, 5); !bytes.Equal(got, make([]byte, 5)) {
		t.Errorf("empty directory % x", got)
	}
}

func TestE820(t *testing.T) {
	got := E820([]E820Entry{
		{Addr: 0, Size: 64 << 20, Type: E820RAM},
		{Addr: 0xFEFFC000, Size: 0x4000, Type: E820Reserved},
	})
	want := []byte{
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 1, 0, 0, 0,
		0x00, 0xC0, 0xFF, 0xFE, 0, 0, 0, 0, 0x00, 0x40, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Errorf("e820\n got % x\nwant % x", got, want)
	}
	if got := E820(nil); len(got) != 0 {
		t.Errorf("empty map % x", got)
	}
}

func TestUnknownKey(t *testing.T) {
	d := withFiles(t)
	for _, key := range []uint16{0x02, 0x22, 0x1234, 0x4000, 0x4020, 0x8003, 0xFFFF} {
		sel(d, key)
		if got := read(d, 4); !bytes.Equal(got, make([]byte, 4)) {
			t.Errorf("key %#x: % x", key, got)
		}
	}
	if st := d.Stats(); st.UnknownKeys != 7 || st.Selects != 7 {
		t.Errorf("stats %+v", st)
	}
}

func TestReselectRewinds(t *testing.T) {
	d := withFiles(t)
	sel(d, 0x20)
	read(d, 3)
	sel(d, 0x20)
	if got := read(d, 2); !bytes.Equal(got, serconData[:2]) {
		t.Errorf("after re-select % x", got)
	}
	// Selecting another item and coming back rewinds too.
	sel(d, KeySignature)
	read(d, 1)
	sel(d, 0x20)
	if got := read(d, 1); got[0] != serconData[0] {
		t.Errorf("after switching % x", got)
	}
}

func TestSelectorAccessWidths(t *testing.T) {
	d := withFiles(t)
	// A byte write to 0x510 is the low half; the high half becomes 0.
	sel(d, 0x8021)
	d.Write(0, []byte{0x21})
	if got := read(d, 1); got[0] != e820Data[0] {
		t.Errorf("byte select: % x", got)
	}
	// Reads of the selector return the key, little-endian.
	sel(d, 0x1234)
	var w [2]byte
	d.Read(0, w[:])
	if w != [2]byte{0x34, 0x12} {
		t.Errorf("16-bit selector read % x", w)
	}
	var b [1]byte
	d.Read(0, b[:])
	if b[0] != 0x34 {
		t.Errorf("byte selector read %#x", b[0])
	}
	// A 16-bit select followed by a 16-bit read at 0 leaves the data
	// offset alone.
	sel(d, KeySignature)
	d.Read(0, w[:])
	if got := read(d, 1); got[0] != 'Q' {
		t.Errorf("data after selector read %q", got)
	}
	// Past the device: all ones, data untouched.
	d.Read(1, w[:])
	if w != [2]byte{'E', 0xFF} {
		t.Errorf("read running past the data port % x", w)
	}
	d.Read(2, b[:])
	if b[0] != 0xFF {
		t.Errorf("offset 2 read %#x", b[0])
	}
}

func TestDataWritesIgnored(t *testing.T) {
	d := New()
	sel(d, KeySignature)
	d.Write(1, []byte{'X'})
	d.Write(1, []byte{'Y', 'Z'})
	if got := read(d, 4); !bytes.Equal(got, []byte("QEMU")) {
		t.Errorf("signature after data writes %q", got)
	}
	if st := d.Stats(); st.DataWrites != 2 || st.DataReads != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestAddErrors(t *testing.T) {
	d := withFiles(t)
	for _, key := range []uint16{KeyFileDir, 0x20, 0x21, 0x3FFF, 0x4001, 0xC003} {
		if err := d.AddItem(key, []byte{1}); !errors.Is(err, ErrItem) {
			t.Errorf("AddItem(%#x): %v", key, err)
		}
	}
	if err := d.AddItem(KeySignature, nil); !errors.Is(err, ErrItem) {
		t.Errorf("duplicate key: %v", err)
	}
	if err := d.AddItem(0x8003, []byte{1}); err != nil {
		t.Errorf("arch-local key: %v", err)
	}
	for _, name := range []string{"", string(bytes.Repeat([]byte("a"), 56)), "etc/e820", "a\x00b"} {
		if err := d.AddFile(name, nil); !errors.Is(err, ErrItem) {
			t.Errorf("AddFile(%q): %v", name, err)
		}
	}
	if err := d.AddFile(string(bytes.Repeat([]byte("a"), 55)), nil); err != nil {
		t.Errorf("55-byte name: %v", err)
	}
	if err := d.AddFile("big", make([]byte, MaxData)); !errors.Is(err, ErrFull) {
		t.Errorf("oversized file: %v", err)
	}
	// A rejected file takes no key: the next one gets 0x23.
	if err := d.AddFile("etc/next", []byte{7}); err != nil {
		t.Fatal(err)
	}
	sel(d, 0x23)
	if got := read(d, 1); got[0] != 7 {
		t.Errorf("key 0x23: % x", got)
	}
}

func TestItemsAreCopied(t *testing.T) {
	d := New()
	data := []byte{1, 2}
	if err := d.AddFile("f", data); err != nil {
		t.Fatal(err)
	}
	data[0] = 9
	sel(d, KeyFileFirst)
	if got := read(d, 2); !bytes.Equal(got, []byte{1, 2}) {
		t.Errorf("file changed with the caller's slice: % x", got)
	}
}

// TestConcurrent drives the device from several goroutines; run with
// -race. Every byte read must come from one of the items.
func TestConcurrent(t *testing.T) {
	d := withFiles(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				switch (g + i) % 4 {
				case 0:
					sel(d, uint16(i%0x24))
				case 1:
					var w [2]byte
					d.Read(0, w[:])
				default:
					read(d, 1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			d.AddFile(string(rune('A'+i)), []byte{byte(i)})
			d.Stats()
		}
	}()
	wg.Wait()
}

// FuzzFWCfg drives the ports with arbitrary accesses. Nothing may panic,
// and every data byte must be the selected item's next byte (or 0 past its
// end or for an unknown key), judged against a model built here from
// golden bytes rather than from the device's own state.
//
// Input: 3-byte records {op, a, b}.
func FuzzFWCfg(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		d := withFiles(t)
		model := map[uint16][]byte{
			KeySignature: []byte("QEMU"),
			KeyID:        {1, 0, 0, 0},
			KeyFileDir:   goldenDir,
			0x20:         serconData,
			0x21:         e820Data,
		}
		key, pos := uint16(KeySignature), 0
		next := func() byte {
			item := model[key]
			v := byte(0)
			if pos < len(item) {
				v = item[pos]
			}
			pos++
			return v
		}
		for ; len(in) >= 3; in = in[3:] {
			op, a, b := in[0], in[1], in[2]
			switch op % 7 {
			case 0: // 16-bit select
				d.Write(0, []byte{a, b})
				key, pos = uint16(a)|uint16(b)<<8, 0
			case 1: // byte select
				d.Write(0, []byte{a})
				key, pos = uint16(a), 0
			case 2: // data byte
				var c [1]byte
				d.Read(1, c[:])
				if want := next(); c[0] != want {
					t.Fatalf("key %#x byte %d: %#x, want %#x", key, pos-1, c[0], want)
				}
			case 3: // 16-bit selector read
				var w [2]byte
				d.Read(0, w[:])
				if got := binary.LittleEndian.Uint16(w[:]); got != key {
					t.Fatalf("selector read %#x, want %#x", got, key)
				}
			case 4: // data write, ignored
				d.Write(1, []byte{a})
			case 5: // access running past the data port
				var w [2]byte
				d.Read(1, w[:])
				if want := next(); w[0] != want || w[1] != 0xFF {
					t.Fatalf("key %#x wide data read % x, want %#x ff", key, w, want)
				}
			case 6: // out-of-range offsets
				var w [2]byte
				d.Read(uint64(a)+2, w[:])
				d.Write(uint64(a)+2, w[:])
				if w != [2]byte{0xFF, 0xFF} {
					t.Fatalf("offset %d read % x", uint64(a)+2, w)
				}
			}
		}
	})
}
