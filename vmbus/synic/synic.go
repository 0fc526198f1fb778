// Package synic owns the guest-memory layouts of Hyper-V's synthetic
// interrupt controller that VMBus signalling uses: the event-flags page
// (SIEFP), 16 slots of 2048 flag bits, one slot per SINT. The host raises a
// channel interrupt by setting the channel's flag bit in the SINT 2 slot of
// the target VP and asserting the SINT if the bit went from 0 to 1; the
// guest test-and-clears the bits it finds set and runs those channels.
//
// The page lives in guest memory and the guest can write anything to it at
// any time; the operations here are atomic and never index outside the
// slot.
package synic

import "errors"

// Layout constants (Hyper-V hv_synic_event_flags).
const (
	PageSize      = 4096
	SINTCount     = 16
	SlotSize      = PageSize / SINTCount // 256 bytes
	FlagsPerSlot  = SlotSize * 8         // 2048
	VMBusSINT     = 2
	wordsPerSlot  = SlotSize / 8
	bitsPerWord   = 64
	vmbusSlotBase = VMBusSINT * SlotSize
)

// ErrBadFlag: a flag number outside 0..2047.
var ErrBadFlag = errors.New("synic: event flag out of range")

// EventFlags is the VMBus (SINT 2) slot of an event-flags page.
type EventFlags struct {
	slot []byte // SlotSize bytes, 8-byte aligned
}

// NewEventFlags wraps a 4 KiB event-flags page (guest memory).
func NewEventFlags(page []byte) (*EventFlags, error) {
	if len(page) < PageSize || !aligned8(page) {
		return nil, errors.New("synic: event-flags page must be 4096 bytes, 8-byte aligned")
	}
	return &EventFlags{slot: page[vmbusSlotBase : vmbusSlotBase+SlotSize : vmbusSlotBase+SlotSize]}, nil
}

// Set sets flag n and reports whether it was clear before, i.e. whether the
// SINT must be asserted.
func (e *EventFlags) Set(n uint32) (wasClear bool, err error) {
	if n >= FlagsPerSlot {
		return false, ErrBadFlag
	}
	bit := uint64(1) << (n % bitsPerWord)
	old := orWord(e.slot, int(n/bitsPerWord), bit)
	return old&bit == 0, nil
}

// Drain test-and-clears every set flag and calls fn for each, in ascending
// order. Flag 0 is reserved for the control path and is cleared without a
// call, as Linux does.
func (e *EventFlags) Drain(fn func(flag uint32)) {
	for w := 0; w < wordsPerSlot; w++ {
		bits := swapWord(e.slot, w, 0)
		for bits != 0 {
			b := trailingZeros(bits)
			bits &^= 1 << b
			if flag := uint32(w*bitsPerWord + b); flag != 0 {
				fn(flag)
			}
		}
	}
}
