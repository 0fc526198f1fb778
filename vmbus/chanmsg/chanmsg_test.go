package chanmsg

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// wire builds test messages byte by byte, independently of the encoders.
type wire []byte

func hdr(t Type) wire                 { return wire{}.u32(uint32(t)).u32(0) }
func (w wire) u16(v uint16) wire      { return binary.LittleEndian.AppendUint16(w, v) }
func (w wire) u32(v uint32) wire      { return binary.LittleEndian.AppendUint32(w, v) }
func (w wire) u64(v uint64) wire      { return binary.LittleEndian.AppendUint64(w, v) }
func (w wire) zeros(n int) wire       { return append(w, make([]byte, n)...) }
func (w wire) rng(bc, bo uint32) wire { return w.u32(bc).u32(bo) }

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGUID(t *testing.T) {
	const s = "f8615163-df3e-46c5-913f-f2d2f965ed0e"
	want := GUID{0x63, 0x51, 0x61, 0xf8, 0x3e, 0xdf, 0xc5, 0x46, 0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e}
	for _, in := range []string{s, strings.ToUpper(s), "{" + s + "}"} {
		g, err := ParseGUID(in)
		if err != nil {
			t.Fatalf("ParseGUID(%q): %v", in, err)
		}
		if g != want {
			t.Errorf("ParseGUID(%q) = % x, want % x", in, g[:], want[:])
		}
	}
	if got := want.String(); got != s {
		t.Errorf("String() = %q, want %q", got, s)
	}
	if got := MustParseGUID("00000000-facb-11e6-bd58-64006a7986d3").String(); got != "00000000-facb-11e6-bd58-64006a7986d3" {
		t.Errorf("round trip gave %q", got)
	}
	for _, bad := range []string{
		"", s[:35], s + "0", "f8615163-df3e-46c5-913f-f2d2f965ed0g",
		"f8615163df3e-46c5-913f-f2d2f965ed0e0", "{" + s, "f8615163-df3e-46c5-913f+f2d2f965ed0e",
	} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) succeeded", bad)
		}
	}
}

func TestVersion(t *testing.T) {
	for v, s := range map[Version]string{Version0_13: "0.13", Version1_1: "1.1", Version2_4: "2.4", Version5_3: "5.3", Version6_0: "6.0"} {
		if v.String() != s {
			t.Errorf("%#x.String() = %q, want %q", uint32(v), v.String(), s)
		}
	}
	if Version0_13 != 0xD || Version2_4 != 0x20004 || Version5_3 != 0x50003 {
		t.Error("version constants")
	}
	for i := 1; i < len(SupportedVersions); i++ {
		if SupportedVersions[i] >= SupportedVersions[i-1] {
			t.Errorf("SupportedVersions not newest first at %d", i)
		}
	}
	if SupportedVersions[0] != Version5_3 || SupportedVersions[len(SupportedVersions)-1] != Version2_4 {
		t.Error("SupportedVersions should run from 5.3 to 2.4")
	}
	if Version6_0.Supported() || Version1_1.Supported() || !Version4_1.Supported() {
		t.Error("Supported")
	}
}

func TestTypeString(t *testing.T) {
	if TypeOfferChannel.String() != "offer-channel" || TypeModifyChannelResponse.String() != "modify-channel-response" {
		t.Error("names")
	}
	for _, ty := range []Type{0, 18, 25, 0xFFFFFFFF} {
		if !strings.HasPrefix(ty.String(), "type(") {
			t.Errorf("Type(%d).String() = %q", uint32(ty), ty.String())
		}
	}
}

func gu(s string) GUID { return MustParseGUID(s) }

func fill120(seed byte) (a [120]byte) {
	for i := range a {
		a[i] = seed + byte(i)
	}
	return a
}

// samples holds one message of every type with every field set, and its
// exact encoded size (section 3.3 of the protocol notes).
var samples = []struct {
	m    Message
	size int
}{
	{&OfferChannel{
		InterfaceType:         gu("f8615163-df3e-46c5-913f-f2d2f965ed0e"),
		InterfaceInstance:     gu("01020304-0506-0708-090a-0b0c0d0e0f10"),
		Flags:                 OfferFlagNamedPipeMode | OfferFlagEnumerateDeviceInterface,
		MMIOMegabytes:         8,
		UserDefined:           fill120(1),
		SubChannelIndex:       3,
		MMIOMegabytesOptional: 16,
		ChildRelID:            5,
		MonitorID:             7,
		MonitorAllocated:      true,
		IsDedicatedInterrupt:  true,
		ConnectionID:          0x2005,
	}, 196},
	{&RescindChannelOffer{ChildRelID: 9}, 12},
	{&RequestOffers{}, 8},
	{&AllOffersDelivered{}, 8},
	{&OpenChannel{ChildRelID: 5, OpenID: 5, RingBufferGPADL: 0xE1E10, TargetVP: 2,
		DownstreamRingBufferPageOffset: 64, UserData: fill120(0x80)}, 148},
	{&OpenChannelResult{ChildRelID: 5, OpenID: 6, Status: StatusUnsuccessful}, 20},
	{&CloseChannel{ChildRelID: 5}, 12},
	{&GPADLHeader{ChildRelID: 5, GPADL: 0xE1E10, RangeBufLen: 8 + 8*30, RangeCount: 1,
		Data: []uint64{30*4096 - 10, 1, 2, 3}}, 20 + 4*8},
	{&GPADLBody{MsgNumber: 1, GPADL: 0xE1E10, Data: []uint64{4, 5, 6}}, 16 + 3*8},
	{&GPADLCreated{ChildRelID: 5, GPADL: 0xE1E10, Status: 1}, 20},
	{&GPADLTeardown{ChildRelID: 5, GPADL: 0xE1E10}, 16},
	{&GPADLTorndown{GPADL: 0xE1E10}, 12},
	{&RelIDReleased{ChildRelID: 5}, 12},
	{&InitiateContact{VersionRequested: Version4_0, TargetVCPU: 1, InterruptPage: 0x1234000,
		MonitorPage1: 0x5000, MonitorPage2: 0x6000}, 40},
	{&VersionResponse{VersionSupported: true, ConnectionState: ConnectionFailedUnknown, MsgConnID: 1}, 16},
	{&Unload{}, 8},
	{&UnloadResponse{}, 8},
	{&TLConnectRequest{GuestEndpointID: gu("00000400-facb-11e6-bd58-64006a7986d3"),
		HostServiceID: gu("11111111-2222-3333-4444-555555555555")}, 40},
	{&TLConnectRequest{GuestEndpointID: gu("00000400-facb-11e6-bd58-64006a7986d3"),
		HostServiceID: gu("11111111-2222-3333-4444-555555555555"),
		SiloID:        gu("99999999-8888-7777-6666-555555555555"), HasSiloID: true}, 56},
	{&ModifyChannel{ChildRelID: 5, TargetVP: 3}, 16},
	{&TLConnectResult{EndpointID: gu("00000400-facb-11e6-bd58-64006a7986d3"),
		ServiceID: gu("11111111-2222-3333-4444-555555555555"), Status: StatusConnectionRefused}, 44},
	{&ModifyChannelResponse{ChildRelID: 5, Status: 0}, 16},
}

func TestRoundTrip(t *testing.T) {
	seen := map[Type]bool{}
	for _, s := range samples {
		ty := s.m.Type()
		seen[ty] = true
		prefix := []byte("prefix")
		b := s.m.AppendTo(prefix)
		if !bytes.Equal(b[:len(prefix)], []byte("prefix")) {
			t.Fatalf("%v: AppendTo clobbered its input", ty)
		}
		b = b[len(prefix):]
		if len(b) != s.size {
			t.Errorf("%v: %d bytes, want %d", ty, len(b), s.size)
		}
		if Type(binary.LittleEndian.Uint32(b)) != ty || binary.LittleEndian.Uint32(b[4:]) != 0 {
			t.Errorf("%v: bad header % x", ty, b[:8])
		}
		got, err := Decode(b)
		if err != nil {
			t.Errorf("%v: Decode: %v", ty, err)
			continue
		}
		if !reflect.DeepEqual(got, s.m) {
			t.Errorf("%v: round trip\n got %+v\nwant %+v", ty, got, s.m)
		}
	}
	for ty := Type(1); ty <= 24; ty++ {
		if !seen[ty] && (ty < 18 || ty > 20) {
			t.Errorf("no sample for %v", ty)
		}
	}
}

// Fixed-size messages may arrive longer (later protocol variants, payloads
// rounded up to 8); the extra bytes are ignored.
func TestDecodeLonger(t *testing.T) {
	for _, s := range samples {
		switch s.m.(type) {
		case *GPADLHeader, *GPADLBody, *TLConnectRequest:
			continue
		}
		b := s.m.AppendTo(nil)
		b = append(b, bytes.Repeat([]byte{0xAA}, MaxMessageSize-len(b))...)
		got, err := Decode(b)
		if err != nil {
			t.Errorf("%v at %d bytes: %v", s.m.Type(), len(b), err)
			continue
		}
		if !reflect.DeepEqual(got, s.m) {
			t.Errorf("%v: trailing bytes changed the message: %+v", s.m.Type(), got)
		}
	}
}

func TestOfferGolden(t *testing.T) {
	var want [196]byte
	want[0] = 1 // msgtype
	copy(want[8:], unhex(t, "635161f83edfc546913ff2d2f965ed0e"))
	copy(want[24:], unhex(t, "0403020106050807090a0b0c0d0e0f10"))
	// 40..55 reserved, zero
	want[56], want[57] = 0x11, 0x00 // flags
	want[58], want[59] = 8, 0       // mmio megabytes
	for i := 0; i < 120; i++ {
		want[60+i] = 1 + byte(i)
	}
	want[180], want[181] = 3, 0                // sub_channel_index
	want[182], want[183] = 16, 0               // mmio_megabytes_optional
	copy(want[184:], []byte{5, 0, 0, 0})       // child_relid
	want[188] = 7                              // monitorid
	want[189] = 1                              // monitor_allocated
	want[190], want[191] = 1, 0                // is_dedicated_interrupt
	copy(want[192:], []byte{0x05, 0x20, 0, 0}) // connection_id
	got := samples[0].m.AppendTo(nil)
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("offer encoding\n got % x\nwant % x", got, want[:])
	}

	// Reserved bits are ignored on decode.
	b := bytes.Clone(want[:])
	b[4], b[40], b[189], b[191] = 0xFF, 0xFF, 0xFE, 0xFF
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	o := m.(*OfferChannel)
	if o.MonitorAllocated || !o.IsDedicatedInterrupt || o.ChildRelID != 5 || o.ConnectionID != 0x2005 {
		t.Errorf("decode with reserved bits: %+v", o)
	}
}

func TestInitiateContactGolden(t *testing.T) {
	m := NewInitiateContact(Version5_3, 0, 0x11000, 0x12000)
	want := unhex(t, `
		0e000000 00000000
		03000500 00000000
		02000000 00000000
		00100100 00000000
		00200100 00000000`)
	if got := m.AppendTo(nil); !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
	// Decode does not judge versions: 5.4 does not exist but decodes.
	d, err := Decode(unhex(t, `
		0e000000 00000000
		04000500 03000000
		02010000 00000000
		00000000 00000000
		00000000 00000000`))
	if err != nil {
		t.Fatal(err)
	}
	ic := d.(*InitiateContact)
	if ic.VersionRequested != Version(0x50004) || ic.TargetVCPU != 3 || ic.MsgSINT() != 2 || ic.MsgVTL() != 1 {
		t.Errorf("decoded %+v sint %d vtl %d", ic, ic.MsgSINT(), ic.MsgVTL())
	}
	old := NewInitiateContact(Version4_0, 1, 0, 0)
	if old.InterruptPage != 0 {
		t.Errorf("4.0 contact has InterruptPage %#x", old.InterruptPage)
	}
}

func TestVersionResponseGolden(t *testing.T) {
	m := &VersionResponse{VersionSupported: true, ConnectionState: ConnectionSuccessful, MsgConnID: MessageConnectionID}
	want := unhex(t, "0f000000 00000000 01000000 01000000")
	if got := m.AppendTo(nil); !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
	d, err := Decode(unhex(t, "0f000000 00000000 00020000 04000000"))
	if err != nil {
		t.Fatal(err)
	}
	if got := *d.(*VersionResponse); got != (VersionResponse{false, ConnectionFailedUnknown, 4}) {
		t.Errorf("decoded %+v", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	type tc struct {
		name string
		b    []byte
		want error
	}
	cases := []tc{
		{"empty", nil, ErrTooShort},
		{"half header", hdr(TypeRequestOffers)[:7], ErrTooShort},
		{"over 240", hdr(TypeOfferChannel).zeros(233), ErrTooLarge},
		{"type 0", hdr(0), ErrUnknownType},
		{"type 18", hdr(18).zeros(40), ErrUnknownType},
		{"type 19", hdr(19).zeros(40), ErrUnknownType},
		{"type 20", hdr(20).zeros(40), ErrUnknownType},
		{"type 25", hdr(25).zeros(40), ErrUnknownType},
		{"type max", hdr(0xFFFFFFFF), ErrUnknownType},
		{"tl connect 39", hdr(TypeTLConnectRequest).zeros(31), ErrTooShort},

		{"gpadl header 19", hdr(TypeGPADLHeader).zeros(11), ErrTooShort},
		{"gpadl header rangecount 0",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(16).u16(0).rng(4096, 0).u64(7), ErrMalformed},
		{"gpadl header buflen not words",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(17).u16(1).rng(4096, 0).u64(7), ErrMalformed},
		{"gpadl header partial word",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(16).u16(1).rng(4096, 0).u32(7), ErrMalformed},
		{"gpadl header byte_offset 4096",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(16).u16(1).rng(1, 4096).u64(7), ErrMalformed},
		{"gpadl header byte_count 0",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(16).u16(1).rng(0, 0).u64(7), ErrMalformed},
		{"gpadl header pfns do not fit buflen",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(24).u16(1).rng(3*4096, 0).u64(7).u64(8), ErrMalformed},
		{"gpadl header buflen longer than its one range",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(32).u16(1).rng(4096, 0).u64(7), ErrMalformed},
		{"gpadl header more words than buflen",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(16).u16(1).rng(4096, 0).u64(7).u64(8), ErrMalformed},
		{"gpadl header word after last range",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(24).u16(1).rng(4096, 0).u64(7).u64(8), ErrMalformed},
		{"gpadl header two ranges in 24 bytes",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(24).u16(2).rng(4096, 0).u64(7), ErrMalformed},
		{"gpadl header second range has no room",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(32).u16(2).rng(2*4096, 0).u64(7), ErrMalformed},
		{"gpadl header rangecount beyond buflen",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(0xFFF8).u16(0xFFFF), ErrMalformed},
		{"gpadl header buflen 0",
			hdr(TypeGPADLHeader).u32(5).u32(1).u16(0).u16(1), ErrMalformed},
		{"gpadl body 15", hdr(TypeGPADLBody).zeros(7), ErrTooShort},
		{"gpadl body partial word", hdr(TypeGPADLBody).u32(0).u32(1).zeros(12), ErrMalformed},
		{"gpadl body over 240", hdr(TypeGPADLBody).u32(0).u32(1).zeros(29 * 8), ErrTooLarge},
	}
	for _, s := range samples {
		if sz := kinds[s.m.Type()].size; sz > HeaderSize {
			b := s.m.AppendTo(nil)
			cases = append(cases, tc{s.m.Type().String() + " one short", b[:sz-1], ErrTooShort})
		}
	}
	for _, c := range cases {
		m, err := Decode(c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v (%v), want %v", c.name, err, m, c.want)
		}
		if err != nil && m != nil {
			t.Errorf("%s: message %v returned with error", c.name, m)
		}
	}
}

// A header may hold only part of its range list; what it holds is checked,
// the rest is counted.
func TestGPADLHeaderPrefix(t *testing.T) {
	b := hdr(TypeGPADLHeader).u32(5).u32(0xE1E10).u16(8+8*100).u16(1).rng(100*4096, 0)
	for i := 0; i < 26; i++ {
		b = b.u64(uint64(0x1000 + i))
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	h := m.(*GPADLHeader)
	if len(b) != 236 || len(h.Data) != 27 || h.WordsInBodies() != 74 {
		t.Errorf("len %d, %d words, %d in bodies", len(b), len(h.Data), h.WordsInBodies())
	}
	// A header with nothing but its fixed part is fine too.
	if _, err := Decode(hdr(TypeGPADLHeader).u32(5).u32(1).u16(16).u16(1)); err != nil {
		t.Errorf("empty header: %v", err)
	}
}

// pages builds a single range of n pages with an unaligned start, whose PFNs
// are base, base+1, ...
func pages(n int, base uint64) GPARange {
	r := GPARange{ByteOffset: 0x10, ByteCount: uint32(n*PageSize - 0x10 - 5)}
	for i := 0; i < n; i++ {
		r.PFNs = append(r.PFNs, base+uint64(i))
	}
	return r
}

// transmit encodes the split messages, checks their size and decodes them
// as a host would.
func transmit(t *testing.T, h *GPADLHeader, bodies []*GPADLBody) (*GPADLHeader, []*GPADLBody) {
	t.Helper()
	var out []*GPADLBody
	dec := func(m Message) Message {
		b := m.AppendTo(nil)
		if len(b) > MaxMessageSize {
			t.Fatalf("%v is %d bytes", m.Type(), len(b))
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode %v: %v", m.Type(), err)
		}
		return d
	}
	hh := dec(h).(*GPADLHeader)
	for _, b := range bodies {
		out = append(out, dec(b).(*GPADLBody))
	}
	return hh, out
}

func assemble(t *testing.T, h *GPADLHeader, bodies []*GPADLBody) []GPARange {
	t.Helper()
	a, err := NewGPADLAssembler(h)
	if err != nil {
		t.Fatalf("NewGPADLAssembler: %v", err)
	}
	if a.ChildRelID() != h.ChildRelID || a.GPADL() != h.GPADL {
		t.Errorf("ids %d %#x", a.ChildRelID(), a.GPADL())
	}
	for i, b := range bodies {
		if a.Done() || a.Ranges() != nil {
			t.Fatalf("done before body %d", i)
		}
		done, err := a.Add(b)
		if err != nil {
			t.Fatalf("Add body %d: %v", i, err)
		}
		if done != (i == len(bodies)-1) {
			t.Fatalf("body %d of %d: done=%v", i, len(bodies), done)
		}
	}
	if !a.Done() {
		t.Fatal("not done after all bodies")
	}
	return a.Ranges()
}

func TestSplitGPADLSingleRange(t *testing.T) {
	for _, c := range []struct{ n, headerPFNs, bodies int }{
		{1, 1, 0}, {26, 26, 0}, {27, 26, 1}, {54, 26, 1}, {55, 26, 2}, {1000, 26, 35}, {MaxGPADLPFNs, 26, 292},
	} {
		r := []GPARange{pages(c.n, 0x100000)}
		h, bodies, err := SplitGPADL(5, 0xE1E10, r)
		if err != nil {
			t.Fatalf("%d pages: %v", c.n, err)
		}
		if len(h.Data) != 1+c.headerPFNs || len(bodies) != c.bodies || h.RangeCount != 1 || int(h.RangeBufLen) != 8+8*c.n {
			t.Errorf("%d pages: header %d words, %d bodies, buflen %d", c.n, len(h.Data), len(bodies), h.RangeBufLen)
		}
		if got := len(h.AppendTo(nil)); got != 20+8+8*c.headerPFNs {
			t.Errorf("%d pages: header message %d bytes", c.n, got)
		}
		for i, b := range bodies {
			if b.GPADL != 0xE1E10 || (i < len(bodies)-1 && len(b.Data) != 28) {
				t.Errorf("%d pages: body %d has %d words", c.n, i, len(b.Data))
			}
		}
		hh, bb := transmit(t, h, bodies)
		if got := assemble(t, hh, bb); !reflect.DeepEqual(got, r) {
			t.Errorf("%d pages: assembled ranges differ", c.n)
		}
	}
	if _, _, err := SplitGPADL(5, 1, []GPARange{pages(MaxGPADLPFNs+1, 0)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d pages: %v, want ErrTooLarge", MaxGPADLPFNs+1, err)
	}
}

func TestSplitGPADLMultiRange(t *testing.T) {
	lists := [][]GPARange{
		{pages(1, 10), pages(2, 20), pages(3, 30)},
		{pages(10, 100), pages(10, 200), pages(10, 300)}, // third header at word 22, its PFNs spill
		{pages(1, 1), pages(500, 1000)},
		{{ByteCount: 1, ByteOffset: 4095, PFNs: []uint64{7}}, {ByteCount: 2, ByteOffset: 4095, PFNs: []uint64{8, 9}}},
	}
	for i, r := range lists {
		h, bodies, err := SplitGPADL(7, uint32(i), r)
		if err != nil {
			t.Fatalf("list %d: %v", i, err)
		}
		hh, bb := transmit(t, h, bodies)
		if got := assemble(t, hh, bb); !reflect.DeepEqual(got, r) {
			t.Errorf("list %d: assembled\n%+v\nwant\n%+v", i, got, r)
		}
	}
}

func TestSplitGPADLErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		r    []GPARange
		want error
	}{
		{"no ranges", nil, ErrMalformed},
		{"byte_count 0", []GPARange{{ByteCount: 0, PFNs: nil}}, ErrMalformed},
		{"byte_offset 4096", []GPARange{{ByteCount: 1, ByteOffset: 4096, PFNs: []uint64{1, 2}}}, ErrMalformed},
		{"too few pfns", []GPARange{{ByteCount: 4097, PFNs: []uint64{1}}}, ErrMalformed},
		{"too many pfns", []GPARange{{ByteCount: 4096, PFNs: []uint64{1, 2}}}, ErrMalformed},
		{"header beyond header message", []GPARange{pages(10, 0), pages(10, 0), pages(10, 0), pages(1, 0)}, ErrTooLarge},
		{"list too long", []GPARange{pages(20, 0), pages(8170, 0)}, ErrTooLarge},
	} {
		_, _, err := SplitGPADL(1, 2, c.r)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

// openvmm's client splits the flat word list wherever 27 words end, so a
// range header can arrive in a body; the assembler accepts that.
func TestAssemblerRangeHeaderInBody(t *testing.T) {
	r := []GPARange{pages(30, 100), pages(2, 200)}
	var words []uint64
	for _, g := range r {
		words = append(words, uint64(g.ByteCount)|uint64(g.ByteOffset)<<32)
		words = append(words, g.PFNs...)
	}
	h := &GPADLHeader{ChildRelID: 1, GPADL: 9, RangeBufLen: uint16(8 * len(words)), RangeCount: 2, Data: words[:27]}
	b := &GPADLBody{GPADL: 9, Data: words[27:]}
	hh, bb := transmit(t, h, []*GPADLBody{b})
	if got := assemble(t, hh, bb); !reflect.DeepEqual(got, r) {
		t.Errorf("assembled %+v", got)
	}
	// SplitGPADL itself refuses to produce such a split.
	if _, _, err := SplitGPADL(1, 9, r); !errors.Is(err, ErrTooLarge) {
		t.Errorf("SplitGPADL: %v", err)
	}
}

func TestAssemblerRejects(t *testing.T) {
	h, bodies, err := SplitGPADL(5, 0xE1E10, []GPARange{pages(60, 0x100)})
	if err != nil || len(bodies) != 2 {
		t.Fatal(err, len(bodies))
	}

	// A foreign body is refused without harm.
	a, err := NewGPADLAssembler(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Add(&GPADLBody{GPADL: 0xE1E11, Data: bodies[0].Data}); !errors.Is(err, ErrGPADLMismatch) {
		t.Errorf("foreign body: %v", err)
	}
	for i, b := range bodies {
		if done, err := a.Add(b); err != nil || done != (i == 1) {
			t.Fatalf("body %d: %v %v", i, done, err)
		}
	}
	// An extra body after completion, even an empty one, is an error that
	// leaves the completed GPADL alone.
	if done, err := a.Add(&GPADLBody{GPADL: 0xE1E10}); !errors.Is(err, ErrMalformed) || !done || len(a.Ranges()) != 1 {
		t.Errorf("extra body: %v %v", done, err)
	}

	// More words than range_buflen leaves: an error, and it sticks.
	a, _ = NewGPADLAssembler(h)
	big := &GPADLBody{GPADL: 0xE1E10, Data: make([]uint64, 28)}
	if _, err := a.Add(big); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Add(big); !errors.Is(err, ErrMalformed) {
		t.Errorf("overflow: %v", err)
	}
	if _, err := a.Add(bodies[1]); !errors.Is(err, ErrMalformed) {
		t.Errorf("after overflow: %v", err)
	}
	if a.Done() || a.Ranges() != nil {
		t.Error("failed assembler reports done")
	}

	// A list that only turns out bad once complete: the second range header
	// arrives in a body with byte_offset 5000.
	h2 := &GPADLHeader{GPADL: 3, RangeBufLen: 8 * 30, RangeCount: 2, Data: []uint64{26 * 4096}}
	a, err = NewGPADLAssembler(h2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Add(&GPADLBody{GPADL: 3, Data: append(make([]uint64, 26), 1|5000<<32, 1, 2)}); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad late range: %v", err)
	}

	// A hand-built header is checked like a decoded one.
	if _, err := NewGPADLAssembler(&GPADLHeader{RangeBufLen: 16, RangeCount: 1, Data: []uint64{4096 | 4096<<32, 1}}); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad header: %v", err)
	}
	if _, err := NewGPADLAssembler(&GPADLHeader{RangeBufLen: 8, RangeCount: 1, Data: []uint64{4096}}); !errors.Is(err, ErrMalformed) {
		t.Errorf("header without pfn room: %v", err)
	}

	// A GPADL that fits in its header is done at once.
	h3, b3, _ := SplitGPADL(1, 4, []GPARange{pages(3, 0)})
	a, err = NewGPADLAssembler(h3)
	if err != nil || len(b3) != 0 || !a.Done() || len(a.Ranges()) != 1 {
		t.Errorf("single-message gpadl: %v %d %v", err, len(b3), a)
	}
}
