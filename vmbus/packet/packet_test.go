package packet

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// build frames a packet the way a sender would: descriptor, extended
// header, payload, zero padding.
func build(t testing.TB, typ Type, flags uint16, id uint64, ext, payload []byte) []byte {
	t.Helper()
	d, err := Frame(typ, flags, id, len(ext), len(payload))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, d.Size())
	d.Put(b)
	copy(b[DescriptorSize:], ext)
	copy(b[DescriptorSize+len(ext):], payload)
	return b
}

func TestGPADirectRoundTrip(t *testing.T) {
	ranges := []GPARange{
		{ByteCount: 4096, ByteOffset: 0, PFNs: []uint64{7}},
		{ByteCount: 5000, ByteOffset: 100, PFNs: []uint64{9, 10}},
		{ByteCount: 1, ByteOffset: 4095, PFNs: []uint64{1 << 40}},
	}
	ext := AppendGPADirectHeader(nil, ranges)
	if len(ext)%8 != 0 {
		t.Fatalf("extended header %d bytes", len(ext))
	}
	b := build(t, TypeDataGPADirect, FlagCompletionRequested, 5, ext, []byte("vstor"))
	var p Packet
	if err := Parse(b, &p); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Ranges, ranges) {
		t.Errorf("ranges %+v", p.Ranges)
	}
	if !bytes.HasPrefix(p.Payload, []byte("vstor")) || p.TransID != 5 || !p.CompletionRequested() {
		t.Errorf("packet %+v", p)
	}
	// Reuse of p across parses keeps results independent of old content.
	small := build(t, TypeDataGPADirect, 0, 6, AppendGPADirectHeader(nil, ranges[:1]), nil)
	if err := Parse(small, &p); err != nil || len(p.Ranges) != 1 || !reflect.DeepEqual(p.Ranges[0], ranges[0]) {
		t.Errorf("reparse: %v %+v", err, p.Ranges)
	}
}

func TestXferPagesRoundTrip(t *testing.T) {
	xr := []XferRange{{ByteCount: 1514, ByteOffset: 0}, {ByteCount: 60, ByteOffset: 4096}}
	b := build(t, TypeDataTransferPages, 0, 0, AppendXferPagesHeader(nil, 0xCAFE, xr), make([]byte, 40))
	var p Packet
	if err := Parse(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.XferPageSetID != 0xCAFE || !reflect.DeepEqual(p.XferRanges, xr) || len(p.Payload) != 40 {
		t.Errorf("packet %+v", p)
	}
}

func TestParseRejects(t *testing.T) {
	good := build(t, TypeDataInband, 0, 1, nil, make([]byte, 8))
	withDesc := func(d Descriptor, n int) []byte {
		b := make([]byte, n)
		d.Put(b)
		return b
	}
	oneRange := AppendGPADirectHeader(nil, []GPARange{{ByteCount: 10, PFNs: []uint64{1}}})
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:10], ErrTruncated},
		{"offset8 below 2", withDesc(Descriptor{Type: TypeDataInband, Offset8: 1, Len8: 3}, 24), ErrBadDescriptor},
		{"len8 below offset8", withDesc(Descriptor{Type: TypeDataInband, Offset8: 4, Len8: 3}, 24), ErrBadDescriptor},
		{"len8 disagrees with buffer", good[:16], ErrTruncated},
		{"unknown flag", withDesc(Descriptor{Type: TypeDataInband, Offset8: 2, Len8: 2, Flags: 2}, 16), ErrBadDescriptor},
		{"legacy type", withDesc(Descriptor{Type: TypeEstablishGPADL, Offset8: 2, Len8: 2}, 16), ErrBadType},
		{"gpa-direct without header", withDesc(Descriptor{Type: TypeDataGPADirect, Offset8: 2, Len8: 2}, 16), ErrTruncated},
		{"gpa-direct zero ranges", build(t, TypeDataGPADirect, 0, 0, make([]byte, 8), nil), ErrBadRange},
		{"gpa-direct huge count", func() []byte {
			ext := append([]byte(nil), oneRange...)
			ext[4], ext[5], ext[6], ext[7] = 0xff, 0xff, 0xff, 0xff
			return build(t, TypeDataGPADirect, 0, 0, ext, nil)
		}(), ErrBadRange},
		{"gpa-direct offset past page", build(t, TypeDataGPADirect, 0, 0, AppendGPADirectHeader(nil, []GPARange{{ByteCount: 10, ByteOffset: 4096, PFNs: []uint64{1, 2}}}), nil), ErrBadRange},
		{"gpa-direct pfns missing", build(t, TypeDataGPADirect, 0, 0, AppendGPADirectHeader(nil, []GPARange{{ByteCount: 9000, PFNs: []uint64{1}}}), nil), ErrBadRange},
		{"xfer count past header", func() []byte {
			ext := AppendXferPagesHeader(nil, 1, []XferRange{{1, 0}})
			ext[4] = 9
			return build(t, TypeDataTransferPages, 0, 0, ext, nil)
		}(), ErrBadRange},
	}
	for _, c := range cases {
		var p Packet
		if err := Parse(c.b, &p); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestPFNCount(t *testing.T) {
	for _, c := range []struct {
		off, n uint32
		want   int
	}{{0, 1, 1}, {0, 4096, 1}, {1, 4096, 2}, {4095, 2, 2}, {0, 0xFFFFFFFF, 1 << 20}} {
		if got := PFNCount(c.off, c.n); got != c.want {
			t.Errorf("PFNCount(%d,%d)=%d want %d", c.off, c.n, got, c.want)
		}
	}
}

// FuzzParse feeds arbitrary bytes to the packet parser: it must never panic,
// and whatever it accepts must be self-consistent.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if err := Parse(b, &p); err != nil {
			return
		}
		if p.Size() != len(b) || len(p.Payload) != len(b)-int(p.Offset8)*8 {
			t.Fatalf("inconsistent packet %+v for %d bytes", p.Descriptor, len(b))
		}
		for _, r := range p.Ranges {
			if r.ByteOffset >= PageSize || len(r.PFNs) != PFNCount(r.ByteOffset, r.ByteCount) {
				t.Fatalf("bad range %+v", r)
			}
		}
		if p.Type == TypeDataGPADirect {
			// The accepted range list re-encodes to a prefix of the header
			// (the reserved word may hold anything).
			ext := AppendGPADirectHeader(nil, p.Ranges)
			if !bytes.Equal(ext[4:], b[DescriptorSize+4:DescriptorSize+len(ext)]) {
				t.Fatal("range list does not round-trip")
			}
		}
	})
}
