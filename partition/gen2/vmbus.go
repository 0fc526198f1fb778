package gen2

import (
	"errors"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/vmbus/xproc"
)

// busRelay connects a partition to the root's VMBus host over the xproc
// transport. The worker is not on the data path: it carries control
// messages (HvPostMessage up, SINT 2 messages down), registers each
// channel doorbell the root hands it with the platform on DoorbellPort
// (so the program's HvSignalEvent reaches the root without the shim: on
// KVM as an ioeventfd, on ptrace written by the platform), and wakes the
// program when the root sets event flags in the program's event-flags
// page, whose physical address it gave the root.
type busRelay struct {
	p *Partition
	r *xproc.Relay

	mu    sync.Mutex
	bells map[uint32]doorbell // by connection id; guarded by mu
}

// doorbell is an eventfd the root rings on, and whether the platform
// rings it.
type doorbell struct {
	fd       int
	attached bool // registered with the platform: the page's doorbell rings it
}

// maxDoorbells bounds the doorbells one partition's root may hand over
// (KVM allows about 1000 ioeventfds on a bus).
const maxDoorbells = 512

var _ Bus = (*busRelay)(nil)

func newBusRelay(p *Partition, conn *os.File, siefpGPA uint64) (*busRelay, error) {
	b := &busRelay{p: p, bells: map[uint32]doorbell{}}
	r, err := xproc.NewRelay(conn, siefpGPA, b)
	if err != nil {
		return nil, err
	}
	b.r = r
	return b, nil
}

// Message delivers a channel-management message to the program's SINT
// 2, waiting while its queue is full.
func (b *busRelay) Message(_ uint32, payload []byte) bool {
	return b.p.DeliverMessageWait(vmbusSINT, vmbusMessageType, payload)
}

// Doorbell attaches the root's eventfd for connID to the platform.
func (b *busRelay) Doorbell(connID uint32, fd int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.bells[connID]; ok {
		b.detach(connID, old)
	}
	if len(b.bells) >= maxDoorbells {
		b.p.log.Warn("root handed over too many doorbells; refused", "connection", connID)
		unix.Close(fd)
		return
	}
	err := b.p.machine.AddDoorbell(DoorbellPort, connID, fd)
	if err != nil {
		// The signal still works, through the shim.
		b.p.log.Warn("doorbell not attached to the platform; signals will go through the shim", "connection", connID, "error", err)
	}
	b.bells[connID] = doorbell{fd: fd, attached: err == nil}
}

// DoorbellGone detaches and closes connID's doorbell.
func (b *busRelay) DoorbellGone(connID uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d, ok := b.bells[connID]; ok {
		b.detach(connID, d)
	}
}

// detach removes a doorbell; the caller holds b.mu.
func (b *busRelay) detach(connID uint32, d doorbell) {
	if d.attached {
		if err := b.p.machine.RemoveDoorbell(DoorbellPort, connID); err != nil {
			b.p.log.Warn("detach doorbell", "connection", connID, "error", err)
		}
	}
	unix.Close(d.fd)
	delete(b.bells, connID)
}

// Interrupt wakes the program: the root set event flags.
func (b *busRelay) Interrupt() {
	b.p.mu.Lock()
	b.p.synicWake()
	b.p.mu.Unlock()
}

// PostMessage carries the program's HvPostMessage to the root. A full
// socket (the root is behind) is HV_STATUS_INSUFFICIENT_BUFFERS, as
// Hyper-V answers when the host's queue is full; the program retries.
func (b *busRelay) PostMessage(connID, messageType uint32, payload []byte) uint16 {
	if messageType != vmbusMessageType {
		return hvStatusInvalidParameter
	}
	switch err := b.r.TryPostMessage(connID, payload); {
	case errors.Is(err, xproc.ErrBusy):
		return hvStatusInsufficientBuffers
	case err != nil:
		return hvStatusInvalidConnectionID
	}
	return hvStatusSuccess
}

// SignalEvent is the slow path of HvSignalEvent: a signal no doorbell
// took (one the platform refused, or a call the hypercall page did not
// send to the doorbell).
func (b *busRelay) SignalEvent(connID uint32, flag uint16) uint16 {
	if flag != 0 {
		return hvStatusInvalidParameter
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.bells[connID]
	if !ok {
		return hvStatusInvalidConnectionID
	}
	if _, err := unix.Write(d.fd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil && err != unix.EAGAIN {
		return hvStatusInvalidConnectionID
	}
	return hvStatusSuccess
}

// close stops the relay and closes the doorbells. The partition has
// ended, so a Message blocked on a full queue has returned.
func (b *busRelay) close() error {
	err := b.r.Close()
	b.mu.Lock()
	for id, d := range b.bells {
		b.detach(id, d)
	}
	b.mu.Unlock()
	return err
}

// VMBus's SynIC message slot and message type.
const (
	vmbusSINT        = 2
	vmbusMessageType = 1
)
