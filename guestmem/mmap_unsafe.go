package guestmem

// All of the package's mmap and munmap calls, and its only use of unsafe.

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapShared maps [0, size) of the memfd fd shared read/write. The caller
// has checked that size is a page multiple that fits an int and that the
// file holds it.
func mapShared(fd int, size uint64) ([]byte, error) {
	return unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// unmapShared undoes mapShared; b must be exactly the slice it returned.
func unmapShared(b []byte) error {
	return unix.Munmap(b)
}

// mapWindow reserves pages pages of address space with PROT_NONE, then maps
// each run of the memfd fd over its place in the reservation with
// MAP_FIXED. The caller has checked every run against the file's size (so
// pfn*PageSize does not overflow) and that the runs tile [0, pages).
func mapWindow(fd int, pages int, runs []pageRun) ([]byte, error) {
	size := uintptr(pages) * PageSize
	// A private, anonymous, inaccessible reservation: it holds the address
	// range so that nothing else (the Go runtime included) can be placed
	// between the runs.
	base, err := unix.MmapPtr(-1, 0, nil, size, unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("reserve %#x bytes: %w", size, err)
	}
	for _, r := range runs {
		// SAFETY: [addr, addr+r.pages*PageSize) lies inside the
		// reservation made above (the runs tile [0, pages)), which this
		// function alone owns, so MAP_FIXED replaces only our own PROT_NONE
		// pages and never memory the runtime or other code is using.
		addr := unsafe.Add(base, uintptr(r.index)*PageSize)
		_, err := unix.MmapPtr(fd, int64(r.pfn*PageSize), addr, uintptr(r.pages)*PageSize,
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED)
		if err != nil {
			// SAFETY: base/size is the whole reservation, with whatever runs
			// were mapped over it so far; nothing has seen it yet.
			return nil, errors.Join(fmt.Errorf("map pfn %#x (+%d pages) at window page %d: %w", r.pfn, r.pages, r.index, err),
				unix.MunmapPtr(base, size))
		}
	}
	// SAFETY: [base, base+size) is now mapped read/write in full, and stays
	// mapped until unmapWindow, which the Window calls once and then drops
	// the slice. Guest memory is plain bytes: any value is valid.
	return unsafe.Slice((*byte)(base), size), nil
}

// unmapWindow unmaps a window made by mapWindow; b must be exactly the
// slice it returned (or empty, which does nothing).
func unmapWindow(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	// SAFETY: b spans exactly the region mapWindow mapped, and the Window
	// stops handing it out as this runs.
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
}
