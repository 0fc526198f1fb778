package xproc

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus"
	"github.com/partita-hv/partita/vmbus/synic"
)

var _ vmbus.GuestTransport = (*Guest)(nil)

// guestQueue is how many host messages wait for RecvMessage before the
// socket reader stops reading (and the host's writes then block).
const guestQueue = 64

// Guest is the guest end of the transport: a Relay whose handler queues
// messages for RecvMessage, keeps the doorbells and drains the event flags
// into channel waiters.
type Guest struct {
	mem   *guestmem.Memory
	flags *synic.EventFlags
	r     *Relay

	msgs chan []byte   // host messages, in socket order
	quit chan struct{} // closed by Close

	waiters *synic.Waiters

	mu     sync.RWMutex
	bells  map[uint32]int // connection id -> doorbell eventfd; guarded by mu
	closed bool           // guarded by mu
}

// Dial attaches a guest to the host over conn, the socket end NewHost
// returned (possibly inherited by another process, for example as fd 3).
// The transport uses its own duplicate of conn; the caller keeps conn.
// mem is the guest's mapping of guest memory; the page at siefpGPA becomes
// the guest's SynIC event-flags page (the SIEFP MSR value): Dial clears it
// and names it, with the guest's interrupt eventfd, in the hello it sends
// the host.
func Dial(conn *os.File, mem *guestmem.Memory, siefpGPA uint64) (*Guest, error) {
	if siefpGPA%guestmem.PageSize != 0 {
		return nil, fmt.Errorf("xproc: event-flags page %#x not page aligned", siefpGPA)
	}
	page, err := mem.Slice(siefpGPA, guestmem.PageSize)
	if err != nil {
		return nil, fmt.Errorf("xproc: event-flags page: %w", err)
	}
	flags, err := synic.NewEventFlags(page)
	if err != nil {
		return nil, err
	}
	clear(page)
	g := &Guest{
		mem: mem, flags: flags,
		msgs:    make(chan []byte, guestQueue),
		quit:    make(chan struct{}),
		bells:   make(map[uint32]int),
		waiters: synic.NewWaiters(),
	}
	if g.r, err = NewRelay(conn, siefpGPA, (*guestHandler)(g)); err != nil {
		return nil, err
	}
	return g, nil
}

// Memory is the guest's physical memory.
func (g *Guest) Memory() vmbus.GuestMemory { return g.mem }

// guestHandler is the Guest's side of its Relay.
type guestHandler Guest

func (h *guestHandler) Message(_ uint32, payload []byte) bool {
	select {
	case h.msgs <- append(make([]byte, 0, len(payload)), payload...):
		return true
	case <-h.quit:
		return false
	}
}

func (h *guestHandler) Doorbell(connID uint32, fd int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.bells[connID]; ok {
		unix.Close(old)
	}
	if h.closed {
		unix.Close(fd)
		return
	}
	h.bells[connID] = fd
}

func (h *guestHandler) DoorbellGone(connID uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fd, ok := h.bells[connID]; ok {
		unix.Close(fd)
		delete(h.bells, connID)
	}
}

// Interrupt is the guest's SINT 2 handler. It drains under the guest's
// read lock, so that holding the lock holds interrupts off (the tests of
// signal coalescing rely on it).
func (h *guestHandler) Interrupt() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.waiters.Drain(h.flags)
}

// PostMessage is HvPostMessage with message type 1 (VMBus).
func (g *Guest) PostMessage(connID uint32, payload []byte) error {
	if _, err := postFrame(connID, payload); err != nil {
		return err
	}
	if err := g.r.PostMessage(connID, payload); err != nil {
		return fmt.Errorf("%w: %w", vmbus.ErrTransportClosed, err)
	}
	return nil
}

// RecvMessage returns the next message from the host, in order. After
// Close, or once the host has hung up and the queued messages are read, it
// returns vmbus.ErrTransportClosed.
func (g *Guest) RecvMessage() ([]byte, error) {
	select {
	case <-g.quit:
		return nil, vmbus.ErrTransportClosed
	default:
	}
	select {
	case m := <-g.msgs:
		return m, nil
	case <-g.quit:
		return nil, vmbus.ErrTransportClosed
	case <-g.r.HungUp():
		select {
		case m := <-g.msgs:
			return m, nil
		default:
			return nil, vmbus.ErrTransportClosed
		}
	}
}

// SignalEvent is HvSignalEvent on connID: it rings the host's doorbell, or
// returns vmbus.ErrInvalidConnectionID if the host registered none.
func (g *Guest) SignalEvent(connID uint32) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return vmbus.ErrTransportClosed
	}
	fd, ok := g.bells[connID]
	if !ok {
		return fmt.Errorf("%w: %#x", vmbus.ErrInvalidConnectionID, connID)
	}
	return writeEvent(fd)
}

// EventWaiter returns the waiter for event flag flag (1..2047, the
// channel's relid). One waiter per flag; Close it to register another.
func (g *Guest) EventWaiter(flag uint32) (vmbus.Doorbell, error) {
	g.mu.RLock()
	closed := g.closed
	g.mu.RUnlock()
	if closed {
		return nil, vmbus.ErrTransportClosed
	}
	w, err := g.waiters.Add(flag)
	if errors.Is(err, synic.ErrClosed) {
		return nil, vmbus.ErrTransportClosed
	}
	if err != nil {
		return nil, fmt.Errorf("xproc: %w", err)
	}
	return w, nil
}

// Close detaches the guest: pending and later RecvMessage calls return
// vmbus.ErrTransportClosed, waiters' Wait ring.ErrClosed. It does not close
// the guest memory or the caller's conn.
func (g *Guest) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	close(g.quit)
	g.mu.Unlock()

	err := g.r.Close()

	g.mu.Lock()
	bells := g.bells
	g.bells = map[uint32]int{}
	g.mu.Unlock()
	for _, fd := range bells {
		unix.Close(fd)
	}
	g.waiters.Close()
	return err
}
