package xproc

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/partition/memory"
	"github.com/partita-hv/partita/vmbus"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vmbus/synic"
)

var _ vmbus.GuestTransport = (*Guest)(nil)

// guestQueue is how many host messages wait for RecvMessage before the
// socket reader stops reading (and the host's writes then block).
const guestQueue = 64

// Guest is the guest end of the transport.
type Guest struct {
	mem   *memory.Memory
	conn  *net.UnixConn
	rc    syscall.RawConn
	flags *synic.EventFlags
	irq   *os.File // our SINT 2 interrupt eventfd, read through the runtime poller

	msgs     chan []byte   // host messages, in socket order
	readDone chan struct{} // closed when the socket reader returns
	irqDone  chan struct{} // closed when the interrupt handler returns
	quit     chan struct{} // closed by Close

	mu      sync.RWMutex
	bells   map[uint32]int         // connection id -> doorbell eventfd; guarded by mu
	waiters map[uint32]*ring.Event // event flag -> waiter; guarded by mu
	closed  bool                   // guarded by mu
}

// Dial attaches a guest to the host over conn, the socket end NewHost
// returned (possibly inherited by another process, for example as fd 3).
// The transport uses its own duplicate of conn; the caller keeps conn.
// mem is the guest's mapping of guest memory; the page at siefpGPA becomes
// the guest's SynIC event-flags page (the SIEFP MSR value): Dial clears it
// and names it, with the guest's interrupt eventfd, in the hello it sends
// the host.
func Dial(conn *os.File, mem *memory.Memory, siefpGPA uint64) (*Guest, error) {
	if siefpGPA%memory.PageSize != 0 {
		return nil, fmt.Errorf("xproc: event-flags page %#x not page aligned", siefpGPA)
	}
	page, err := mem.Slice(siefpGPA, memory.PageSize)
	if err != nil {
		return nil, fmt.Errorf("xproc: event-flags page: %w", err)
	}
	flags, err := synic.NewEventFlags(page)
	if err != nil {
		return nil, err
	}
	uc, rc, err := seqpacketConn(conn)
	if err != nil {
		return nil, err
	}
	efd, err := newEventfd()
	if err != nil {
		uc.Close()
		return nil, err
	}
	clear(page)
	g := &Guest{
		mem: mem, conn: uc, rc: rc, flags: flags,
		irq:      os.NewFile(uintptr(efd), "vmbus-interrupt"),
		msgs:     make(chan []byte, guestQueue),
		readDone: make(chan struct{}),
		irqDone:  make(chan struct{}),
		quit:     make(chan struct{}),
		bells:    make(map[uint32]int),
		waiters:  make(map[uint32]*ring.Event),
	}
	if _, _, err := uc.WriteMsgUnix(helloFrame(siefpGPA), unix.UnixRights(efd), nil); err != nil {
		uc.Close()
		g.irq.Close()
		return nil, fmt.Errorf("xproc: hello: %w", err)
	}
	go g.readLoop()
	go g.interruptLoop()
	return g, nil
}

// Memory is the guest's physical memory.
func (g *Guest) Memory() *memory.Memory { return g.mem }

// readLoop handles host frames in socket order: messages are queued for
// RecvMessage, doorbell frames update the doorbell table.
func (g *Guest) readLoop() {
	defer close(g.readDone)
	buf := make([]byte, frameBuffer)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, fds, flags, err := recvFrame(g.rc, buf, oob)
		if err != nil {
			return
		}
		f, err := parseHostFrame(buf[:n])
		if err != nil || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			closeAll(fds)
			continue
		}
		switch {
		case f.kind == kindMessage && len(fds) == 0:
			select {
			case g.msgs <- append(make([]byte, 0, len(f.payload)), f.payload...):
			case <-g.quit:
				return
			}
		case f.kind == kindDoorbell && len(fds) == 1:
			g.mu.Lock()
			if old, ok := g.bells[f.word]; ok {
				unix.Close(old)
			}
			if g.closed {
				unix.Close(fds[0])
			} else {
				g.bells[f.word] = fds[0]
			}
			g.mu.Unlock()
		case f.kind == kindGone && len(fds) == 0:
			g.mu.Lock()
			if fd, ok := g.bells[f.word]; ok {
				unix.Close(fd)
				delete(g.bells, f.word)
			}
			g.mu.Unlock()
		default:
			closeAll(fds)
		}
	}
}

// interruptLoop is the guest's SINT 2 handler: on each interrupt it drains
// the event flags and wakes each flagged channel's waiter. A flag with no
// waiter is dropped, as Linux drops an event for a relid it has no channel
// for.
func (g *Guest) interruptLoop() {
	defer close(g.irqDone)
	var b [8]byte
	for {
		if _, err := g.irq.Read(b[:]); err != nil {
			return
		}
		g.mu.RLock()
		g.flags.Drain(func(flag uint32) {
			if w := g.waiters[flag]; w != nil {
				w.Signal()
			}
		})
		g.mu.RUnlock()
	}
}

// PostMessage is HvPostMessage with message type 1 (VMBus).
func (g *Guest) PostMessage(connID uint32, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("xproc: %d-byte message exceeds %d", len(payload), MaxPayload)
	}
	if _, _, err := g.conn.WriteMsgUnix(appendFrame(make([]byte, 0, headerSize+len(payload)), kindPost, connID, payload), nil, nil); err != nil {
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
	case <-g.readDone:
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
	if flag == 0 || flag >= synic.FlagsPerSlot {
		return nil, fmt.Errorf("xproc: event flag %d: %w", flag, synic.ErrBadFlag)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, vmbus.ErrTransportClosed
	}
	if _, dup := g.waiters[flag]; dup {
		return nil, fmt.Errorf("xproc: event flag %d already has a waiter", flag)
	}
	w := &flagWaiter{Event: ring.NewEvent(), g: g, flag: flag}
	g.waiters[flag] = w.Event
	return w, nil
}

// flagWaiter wakes when the host sets its flag; Wait returns ring.ErrClosed
// after Close (its own or the Guest's).
type flagWaiter struct {
	*ring.Event
	g    *Guest
	flag uint32
}

func (w *flagWaiter) Close() error {
	w.g.mu.Lock()
	if w.g.waiters[w.flag] == w.Event {
		delete(w.g.waiters, w.flag)
	}
	w.g.mu.Unlock()
	return w.Event.Close()
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

	err := g.conn.Close() // stops readLoop
	g.irq.Close()         // stops interruptLoop
	<-g.readDone
	<-g.irqDone

	g.mu.Lock()
	bells, waiters := g.bells, g.waiters
	g.bells, g.waiters = map[uint32]int{}, map[uint32]*ring.Event{}
	g.mu.Unlock()
	for _, fd := range bells {
		unix.Close(fd)
	}
	for _, w := range waiters {
		w.Close()
	}
	return err
}
