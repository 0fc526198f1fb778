package fwcfg

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func sel(d *Device, key uint16) { d.Write(0, binary.LittleEndian.AppendUint16(nil, key)) }

func read(d *Device, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		d.Read(1, b[i:i+1])
	}
	return b
}

func TestItemsAndDirectory(t *testing.T) {
	d := New()
	sel(d, KeySignature)
	if got := read(d, 6); !bytes.Equal(got, []byte("QEMU\x00\x00")) {
		t.Errorf("signature % x", got)
	}
	sel(d, KeyID)
	if got := read(d, 4); binary.LittleEndian.Uint32(got) != 1 {
		t.Errorf("features % x: want traditional only", got)
	}
	if err := d.AddItem(KeyRAMSize, binary.LittleEndian.AppendUint64(nil, 64<<20)); err != nil {
		t.Fatal(err)
	}
	if err := d.AddItem(KeyRAMSize, nil); err == nil {
		t.Error("duplicate key accepted")
	}
	sel(d, KeyRAMSize)
	if got := binary.LittleEndian.Uint64(read(d, 8)); got != 64<<20 {
		t.Errorf("ram size %#x", got)
	}
	if err := d.AddFile("etc/sercon-port", binary.LittleEndian.AppendUint64(nil, 0x3F8)); err != nil {
		t.Fatal(err)
	}
	e820 := E820([]E820Entry{{0, 64 << 20, E820RAM}})
	if err := d.AddFile("etc/e820", e820); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", string(make([]byte, 56)), "etc/e820"} {
		if err := d.AddFile(bad, nil); err == nil {
			t.Errorf("file %q accepted", bad)
		}
	}
	// Directory: count, then entries sorted by name (etc/e820 first, key
	// 0x21; etc/sercon-port, key 0x20).
	sel(d, KeyFileDir)
	dir := read(d, 4+2*64)
	if binary.BigEndian.Uint32(dir) != 2 {
		t.Fatalf("count %d", binary.BigEndian.Uint32(dir))
	}
	want := []struct {
		size uint32
		key  uint16
		name string
	}{{20, 0x21, "etc/e820"}, {8, 0x20, "etc/sercon-port"}}
	for i, w := range want {
		e := dir[4+64*i:]
		name := string(bytes.TrimRight(e[8:64], "\x00"))
		if binary.BigEndian.Uint32(e) != w.size || binary.BigEndian.Uint16(e[4:]) != w.key || name != w.name {
			t.Errorf("entry %d: size %d key %#x name %q", i, binary.BigEndian.Uint32(e), binary.BigEndian.Uint16(e[4:]), name)
		}
	}
	sel(d, 0x21)
	if got := read(d, 20); !bytes.Equal(got, e820) {
		t.Errorf("e820 file % x", got)
	}
	// Golden e820 record: address, length, type.
	if want := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 1, 0, 0, 0}; !bytes.Equal(e820, want) {
		t.Errorf("e820 encoding % x", e820)
	}
	// Re-selecting rewinds; unknown keys read 0; data writes are ignored.
	sel(d, 0x20)
	read(d, 3)
	sel(d, 0x20)
	if got := read(d, 2); !bytes.Equal(got, []byte{0xF8, 0x03}) {
		t.Errorf("after re-select % x", got)
	}
	sel(d, 0x1234)
	if got := read(d, 4); !bytes.Equal(got, make([]byte, 4)) {
		t.Errorf("unknown key % x", got)
	}
	d.Write(1, []byte{1})
	if st := d.Stats(); st.UnknownKeys != 1 || st.DataWrites != 1 {
		t.Errorf("stats %+v", st)
	}
}

// FuzzFWCfg drives the ports arbitrarily: no panic, and data reads only
// ever return bytes of the selected item (or 0 past its end).
func FuzzFWCfg(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		d := New()
		d.AddFile("etc/e820", E820([]E820Entry{{0, 1 << 20, E820RAM}}))
		var key uint16
		pos := 0
		for len(b) >= 3 {
			switch b[0] % 3 {
			case 0:
				key = binary.LittleEndian.Uint16(b[1:])
				sel(d, key)
				pos = 0
			case 1:
				var c [1]byte
				d.Read(1, c[:])
				item := d.items[key]
				want := byte(0)
				if pos < len(item) {
					want = item[pos]
				}
				pos++
				if c[0] != want {
					t.Fatalf("key %#x byte %d: %#x, want %#x", key, pos-1, c[0], want)
				}
			case 2:
				d.Write(1, b[1:3])
			}
			b = b[3:]
		}
	})
}
