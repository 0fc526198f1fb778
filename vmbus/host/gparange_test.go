package host

import (
	"errors"
	"testing"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus/packet"
)

func TestRangeBuffers(t *testing.T) {
	mem, err := guestmem.New(t.Name(), 16*guestmem.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for i := range mem.Bytes() {
		mem.Bytes()[i] = byte(i / guestmem.PageSize)
	}
	// 100 bytes from offset 4000 of page 3, continuing into 4; then page 9.
	bufs, err := RangeBuffers(mem, packet.GPARange{ByteCount: 4096 + 200, ByteOffset: 4000, PFNs: []uint64{3, 4, 9}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(bufs) != 2 || len(bufs[0]) != 96+4096 || len(bufs[1]) != 104 || bufs[0][0] != 3 || bufs[0][96] != 4 || bufs[1][0] != 9 {
		t.Fatalf("buffers %d: %d %d", len(bufs), len(bufs[0]), len(bufs[1]))
	}
	for _, bad := range []packet.GPARange{
		{ByteCount: 10, PFNs: []uint64{16}},                     // past the end
		{ByteCount: 10, PFNs: []uint64{1 << 60}},                // address overflow
		{ByteCount: 8192, PFNs: []uint64{1}},                    // too few pages for the count
		{ByteCount: 10, ByteOffset: 4096, PFNs: []uint64{1, 2}}, // offset past the page
		{ByteCount: 0, PFNs: []uint64{1}},                       // empty
	} {
		if _, err := RangeBuffers(mem, bad, nil); err == nil {
			t.Errorf("range %+v accepted", bad)
		} else if !errors.Is(err, guestmem.ErrOutOfRange) && !errors.Is(err, ErrProtocol) {
			t.Errorf("range %+v: %v", bad, err)
		}
	}
}
