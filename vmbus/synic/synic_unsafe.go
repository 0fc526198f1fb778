package synic

import (
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// word returns the i-th 64-bit word of slot for atomic access.
//
// SAFETY: NewEventFlags checked slot is SlotSize bytes and 8-byte aligned;
// callers pass i < wordsPerSlot, so the pointer is in bounds and aligned.
func word(slot []byte, i int) *uint64 {
	return (*uint64)(unsafe.Pointer(&slot[i*8]))
}

func orWord(slot []byte, i int, v uint64) uint64   { return atomic.OrUint64(word(slot, i), v) }
func swapWord(slot []byte, i int, v uint64) uint64 { return atomic.SwapUint64(word(slot, i), v) }
func trailingZeros(v uint64) int                   { return bits.TrailingZeros64(v) }

func aligned8(b []byte) bool { return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%8 == 0 }
