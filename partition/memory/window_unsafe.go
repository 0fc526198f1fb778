package memory

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapWindow reserves len(pfns) pages of address space with PROT_NONE, then
// maps each run of consecutive pfns from the memfd over it with MAP_FIXED.
func mapWindow(fd int, pfns []uint64) (*Window, error) {
	size := uintptr(len(pfns)) * PageSize
	base, err := unix.MmapPtr(-1, 0, nil, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("reserve window: %w", err)
	}
	for i := 0; i < len(pfns); {
		j := i + 1
		for j < len(pfns) && pfns[j] == pfns[j-1]+1 {
			j++
		}
		// SAFETY: base+i*PageSize .. base+j*PageSize lies inside the
		// reservation made above, which nothing else uses; MAP_FIXED
		// replaces exactly those pages with the memfd's pages, whose offsets
		// the caller checked against the file size.
		addr := unsafe.Add(base, uintptr(i)*PageSize)
		if _, err := unix.MmapPtr(fd, int64(pfns[i]*PageSize), addr, uintptr(j-i)*PageSize,
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED); err != nil {
			unix.MunmapPtr(base, size)
			return nil, fmt.Errorf("map pfn %#x into window: %w", pfns[i], err)
		}
		i = j
	}
	// SAFETY: the whole range [base, base+size) is mapped read/write until
	// unmapWindow, which also drops the slice.
	return &Window{b: unsafe.Slice((*byte)(base), size)}, nil
}

func unmapWindow(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	// SAFETY: b is exactly the region mapWindow created.
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
}
