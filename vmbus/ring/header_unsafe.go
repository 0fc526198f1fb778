package ring

import (
	"sync/atomic"
	"unsafe"
)

// word returns the 32-bit control word at byte offset off of the header page
// for atomic access. The header is shared with the peer (another process or
// the guest), so every access to it goes through sync/atomic, whose
// operations are sequentially consistent: a store here is the full barrier
// that Hyper-V's ring protocol asks for (virt_mb() in Linux).
//
// SAFETY: newRing checked that hdr is at least HeaderSize bytes and 8-byte
// aligned, and off is one of the constant offsets below HeaderSize and a
// multiple of 4, so the pointer is in bounds and aligned for a uint32. The
// memory stays alive as long as the ring holds hdr.
func word(hdr []byte, off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&hdr[off]))
}

func load(hdr []byte, off int) uint32 { return atomic.LoadUint32(word(hdr, off)) }

// store writes a control word as an atomic swap. The ring protocol needs
// store->load ordering in both directions (the writer stores write_index
// then loads interrupt_mask; the reader stores interrupt_mask then loads
// write_index; likewise read_index against pending_send_sz). An RMW is a
// full barrier in every build. A plain atomic.Store is one too in normal
// builds (XCHG on amd64), but under the race detector it is only a release
// store, and with a peer in another process that lost wake-ups: both sides
// slept on a full ring.
func store(hdr []byte, off int, v uint32) { atomic.SwapUint32(word(hdr, off), v) }

func or(hdr []byte, off int, v uint32) { atomic.OrUint32(word(hdr, off), v) }

// aligned8 reports whether b starts on an 8-byte boundary.
func aligned8(b []byte) bool { return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%8 == 0 }
