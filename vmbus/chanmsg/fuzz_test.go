package chanmsg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode, as a hostile peer would post
// them. Decode must not panic, must fail only with this package's sentinels,
// and whatever it accepts must survive encode and decode unchanged.
//
// The comparison is between decoded structs, not bytes: decoding drops the
// header's padding word, reserved fields (offer +40..+55, version response
// +10..+11), reserved bits of the offer's two flags, and whatever follows a
// fixed-size layout, so those bytes do not come back. GPADL messages have no
// slack, so for them the bytes after the header must come back exactly.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if m != nil {
				t.Fatalf("message %v returned with error %v", m, err)
			}
			for _, s := range []error{ErrTooLarge, ErrTooShort, ErrUnknownType, ErrMalformed} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("unexpected error %v", err)
		}
		if m.Type() != Type(binary.LittleEndian.Uint32(b)) {
			t.Fatalf("decoded %v from msgtype %d", m.Type(), binary.LittleEndian.Uint32(b))
		}
		enc := m.AppendTo(nil)
		if len(enc) > len(b) {
			t.Fatalf("%v: re-encoded to %d bytes from %d", m.Type(), len(enc), len(b))
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("%v: re-encoded message does not decode: %v", m.Type(), err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("%v: round trip\n got %+v\nwant %+v", m.Type(), m2, m)
		}
		switch m.(type) {
		case *GPADLHeader, *GPADLBody:
			if !bytes.Equal(enc[HeaderSize:], b[HeaderSize:]) {
				t.Fatalf("%v: bytes do not round-trip", m.Type())
			}
		}
	})
}

// FuzzGPADLAssembly drives a GPADLAssembler from a GPADL_HEADER message
// (header, decoded with Decode) and a stream of bodies. bodies is a sequence
// of records: a control byte c, then (c & 0x1f) words of 8 bytes. The body
// built from a record is for the header's GPADL id, or for another one if
// c & 0x20 is set; it is encoded and decoded like a real message (more than
// 28 words is too large and dropped). The assembler must not panic, must
// fail only with ErrMalformed or ErrGPADLMismatch, and a GPADL it completes
// must agree with the header and re-split into the same ranges.
func FuzzGPADLAssembly(f *testing.F) {
	f.Fuzz(func(t *testing.T, header, bodies []byte) {
		m, err := Decode(header)
		if err != nil {
			return
		}
		h, ok := m.(*GPADLHeader)
		if !ok {
			return
		}
		a, err := NewGPADLAssembler(h)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("NewGPADLAssembler: %v", err)
			}
			return
		}
		for len(bodies) > 0 {
			c := bodies[0]
			bodies = bodies[1:]
			n := min(int(c&0x1f), len(bodies)/8)
			body := &GPADLBody{MsgNumber: uint32(c), GPADL: h.GPADL}
			if c&0x20 != 0 {
				body.GPADL = ^h.GPADL
			}
			for i := 0; i < n; i++ {
				body.Data = append(body.Data, binary.LittleEndian.Uint64(bodies[8*i:]))
			}
			bodies = bodies[8*n:]
			dm, err := Decode(body.AppendTo(nil))
			if err != nil {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("body of %d words: %v", n, err)
				}
				continue
			}
			wasDone := a.Done()
			done, err := a.Add(dm.(*GPADLBody))
			if done != a.Done() {
				t.Fatal("Add and Done disagree")
			}
			switch {
			case errors.Is(err, ErrGPADLMismatch):
				if body.GPADL == h.GPADL || done != wasDone {
					t.Fatalf("mismatch error for body of gpadl %#x: %v", body.GPADL, err)
				}
			case errors.Is(err, ErrMalformed):
				if done != wasDone {
					t.Fatal("failed Add changed completion")
				}
			case err != nil:
				t.Fatalf("Add: %v", err)
			case wasDone:
				t.Fatal("Add after completion succeeded")
			}
		}
		if !a.Done() {
			if a.Ranges() != nil {
				t.Fatal("ranges before done")
			}
			return
		}
		ranges := a.Ranges()
		if len(ranges) != int(h.RangeCount) {
			t.Fatalf("%d ranges, header says %d", len(ranges), h.RangeCount)
		}
		words, pfns := 0, 0
		for _, r := range ranges {
			if r.ByteCount == 0 || r.ByteOffset >= PageSize || len(r.PFNs) != pfnCount(r.ByteOffset, r.ByteCount) {
				t.Fatalf("bad range %+v", r)
			}
			words += 1 + len(r.PFNs)
			pfns += len(r.PFNs)
		}
		if 8*words != int(h.RangeBufLen) || pfns > MaxGPADLPFNs {
			t.Fatalf("%d words, %d pfns for range_buflen %d", words, pfns, h.RangeBufLen)
		}
		// Whatever SplitGPADL accepts must assemble to the same ranges.
		h2, b2, err := SplitGPADL(h.ChildRelID, h.GPADL, ranges)
		if err != nil {
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("SplitGPADL of assembled ranges: %v", err)
			}
			return
		}
		a2, err := NewGPADLAssembler(h2)
		if err != nil {
			t.Fatalf("re-split header: %v", err)
		}
		for _, b := range b2 {
			if _, err := a2.Add(b); err != nil {
				t.Fatalf("re-split body: %v", err)
			}
		}
		if !a2.Done() || !reflect.DeepEqual(a2.Ranges(), ranges) {
			t.Fatal("re-split ranges differ")
		}
	})
}
