package host

import (
	"fmt"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus/packet"
)

// RangeBuffers resolves a GPA-direct range (as a device finds it in a
// packet) to the guest bytes it names, appending one slice per run of
// consecutive pages to dst. Every page is checked against guest memory and
// the range's own counts are checked for consistency, so a hostile range
// yields an error, never bytes outside the partition. The slices alias
// guest memory: the guest can change them at any time.
func RangeBuffers(mem *guestmem.Memory, r packet.GPARange, dst [][]byte) ([][]byte, error) {
	if r.ByteCount == 0 || r.ByteOffset >= packet.PageSize || len(r.PFNs) != packet.PFNCount(r.ByteOffset, r.ByteCount) {
		return dst, fmt.Errorf("%w: range of %d bytes at offset %d over %d pages", ErrProtocol, r.ByteCount, r.ByteOffset, len(r.PFNs))
	}
	off := uint64(r.ByteOffset) // into the current run's first page
	left := uint64(r.ByteCount)
	for i := 0; i < len(r.PFNs); {
		j := i + 1
		for j < len(r.PFNs) && r.PFNs[j] == r.PFNs[j-1]+1 {
			j++
		}
		n := min(uint64(j-i)*packet.PageSize-off, left)
		if r.PFNs[i] > (^uint64(0))/packet.PageSize {
			return dst, fmt.Errorf("%w: pfn %#x", guestmem.ErrOutOfRange, r.PFNs[i])
		}
		b, err := mem.Slice(r.PFNs[i]*packet.PageSize+off, n)
		if err != nil {
			return dst, err
		}
		dst = append(dst, b)
		left -= n
		off = 0
		i = j
	}
	return dst, nil
}
