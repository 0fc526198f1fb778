package vmbus

import (
	"errors"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus/ring"
)

// ErrInvalidConnectionID is what HvPostMessage and HvSignalEvent report for
// a connection id nobody listens on (HV_STATUS_INVALID_CONNECTION_ID).
var ErrInvalidConnectionID = errors.New("vmbus: invalid connection id")

// ErrTransportClosed is returned once a transport has shut down.
var ErrTransportClosed = errors.New("vmbus: transport closed")

// Doorbell is the host's end of one guest-to-host connection id: it fires
// each time the guest issues HvSignalEvent for that id: an eventfd passed
// to the guest's worker, which its platform rings (on KVM as an
// ioeventfd, on ptrace by writing it itself). Close stops it and wakes a blocked Wait.
type Doorbell interface {
	ring.Waiter
	Close() error
}

// HostTransport is what the channel server (package vmbus/host) needs from
// whatever carries VMBus between it and a guest.
type HostTransport interface {
	// Memory is the partition's guest memory.
	Memory() *guestmem.Memory
	// RecvMessage blocks for the next message the guest posted with
	// HvPostMessage and returns its connection id and payload (a private
	// copy, at most 240 bytes unless the guest misbehaved).
	RecvMessage() (connID uint32, payload []byte, err error)
	// PostMessage delivers a channel-management message to the guest's
	// SINT 2 on virtual processor vp.
	PostMessage(vp uint32, payload []byte) error
	// SignalGuest sets event flag flag in the SINT 2 slot of vp's
	// event-flags page and interrupts vp if the flag was clear.
	SignalGuest(vp, flag uint32) error
	// RegisterDoorbell starts listening for HvSignalEvent on connID.
	RegisterDoorbell(connID uint32) (Doorbell, error)
	// VPCount is the number of virtual processors messages can target.
	VPCount() uint32
}

// GuestMemory is guest physical memory as a guest sees it: in a test or a
// second process, the whole memfd (*guestmem.Memory); inside a Generation 2
// partition, the pages the program was given physical addresses for.
type GuestMemory interface {
	// Slice returns the bytes at [gpa, gpa+length), or an error if any
	// of them is not there.
	Slice(gpa, length uint64) ([]byte, error)
}

// GuestTransport is what the channel client (package vmbus/client) needs:
// the guest's view of the same mechanisms.
type GuestTransport interface {
	// Memory is the guest's physical memory.
	Memory() GuestMemory
	// PostMessage is HvPostMessage with message type 1 (VMBus).
	PostMessage(connID uint32, payload []byte) error
	// RecvMessage blocks for the next message in the SINT 2 slot.
	RecvMessage() ([]byte, error)
	// SignalEvent is HvSignalEvent on connID with flag 0.
	SignalEvent(connID uint32) error
	// EventWaiter returns a Waiter that fires when the host sets event
	// flag flag (the channel's relid). Close it when the channel closes.
	EventWaiter(flag uint32) (Doorbell, error)
}
