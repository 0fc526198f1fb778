package ring

import (
	"bytes"
	"errors"
	"testing"

	"github.com/partita-hv/partita/vmbus/packet"
)

// FuzzReader hands the reader a ring whose header words and data the fuzzer
// controls, as a hostile peer would leave them: the first 16 bytes are
// write_index, read_index, interrupt_mask and pending_send_sz, the rest is
// the data area of a 2-page ring. Reading must never panic, return more
// than the buffer, or loop forever; a writer on the same memory must fail
// cleanly too. A second reader on a copy of the same memory reads in place
// (Next) and must return exactly the packets, and the errors, that Read does.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		mem := make([]byte, 2*PageSize)
		if len(b) >= 16 {
			copy(mem[:16], b[:16])
			copy(mem[HeaderSize:], b[16:])
		}
		mem[offFeatureBits] = FeaturePendingSendSize
		twin := append([]byte(nil), mem...)
		r, err := NewReader(mem)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("NewReader: %v", err)
			}
			return
		}
		rn, err := NewReader(twin)
		if err != nil {
			t.Fatalf("NewReader on the same bytes: %v", err)
		}
		buf := make([]byte, PageSize)
		for i := 0; i < PageSize; i++ {
			n, err := r.Read(buf)
			b, nerr := rn.Next(len(buf))
			if (err == nil) != (nerr == nil) || err == nil && !bytes.Equal(b, buf[:n]) ||
				errors.Is(err, ErrShortBuffer) != errors.Is(nerr, ErrShortBuffer) {
				t.Fatalf("Read: %d bytes, %v; Next: %d bytes, %v", n, err, len(b), nerr)
			}
			if len(b) > len(buf) {
				t.Fatalf("Next returned %d bytes, limit %d", len(b), len(buf))
			}
			if i%3 == 0 {
				rn.Commit()
			}
			if err != nil {
				if !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrShortBuffer) {
					t.Fatalf("Read: unexpected error %v", err)
				}
				break
			}
			if n < packet.DescriptorSize || n > len(buf) || n%8 != 0 {
				t.Fatalf("Read returned %d bytes", n)
			}
			if _, err := packet.ParseDescriptor(buf[:n]); err != nil {
				t.Fatalf("accepted packet with bad descriptor: %v", err)
			}
			if i%3 == 0 {
				r.Commit()
			}
		}
		r.Commit()
		if w, err := NewWriter(mem); err == nil {
			for i := 0; i < 8; i++ {
				if _, err := w.Write(packet.TypeDataInband, 0, 0, nil, buf[:i*300]); err != nil {
					break
				}
			}
		}
	})
}
