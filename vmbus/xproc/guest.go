package xproc

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/partition/memory"
	"github.com/partita-hv/partita/vmbus"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vmbus/synic"
)

var _ vmbus.GuestTransport = (*Guest)(nil)

// Guest is the guest end of the transport.
type Guest struct {
	mem   *memory.Memory
	conn  *net.UnixConn
	flags *synic.EventFlags
	irq   *os.File // our interrupt eventfd, read through the runtime poller

	msgs chan []byte   // host messages, in order
	done chan struct{} // closed when the socket reader stops
	quit chan struct{} // closed by Close

	mu      sync.RWMutex
	bells   map[uint32]int         // connection id -> doorbell eventfd; guarded by mu
	waiters map[uint32]*ring.Event // event flag -> waiter; guarded by mu
	closed  bool                   // guarded by mu
}

// Dial attaches a guest to the host over conn (the file NewHost returned,
// possibly inherited by another process). The page at siefpGPA becomes the
// guest's SynIC event-flags page. conn is duplicated; the caller keeps it.
func Dial(conn *os.File, mem *memory.Memory, siefpGPA uint64) (*Guest, error) {
	page, err := mem.Slice(siefpGPA, memory.PageSize)
	if err != nil {
		return nil, err
	}
	flags, err := synic.NewEventFlags(page)
	if err != nil {
		return nil, err
	}
	clear(page)
	fd, err := unix.Dup(int(conn.Fd()))
	if err != nil {
		return nil, err
	}
	uc, err := fileConn(fd, "vmbus-guest")
	if err != nil {
		return nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	g := &Guest{
		mem: mem, conn: uc, flags: flags,
		irq:     os.NewFile(uintptr(efd), "vmbus-interrupt"),
		msgs:    make(chan []byte, 64),
		done:    make(chan struct{}),
		quit:    make(chan struct{}),
		bells:   make(map[uint32]int),
		waiters: make(map[uint32]*ring.Event),
	}
	var hello [helloSize]byte
	hello[0] = kindHello
	binary.LittleEndian.PutUint64(hello[8:], siefpGPA)
	if _, _, err := uc.WriteMsgUnix(hello[:], unix.UnixRights(efd), nil); err != nil {
		g.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	go g.readLoop()
	go g.interruptLoop()
	return g, nil
}

// Memory is the guest's physical memory.
func (g *Guest) Memory() *memory.Memory { return g.mem }

// readLoop handles host frames in socket order: messages are queued,
// doorbell frames update the doorbell table.
func (g *Guest) readLoop() {
	defer close(g.done)
	buf := make([]byte, frameBuffer)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := g.conn.ReadMsgUnix(buf, oob)
		if err != nil || (n == 0 && oobn == 0) {
			return
		}
		fds := rights(oob[:oobn])
		f, err := parseHostFrame(buf[:n])
		if err != nil {
			closeAll(fds)
			continue
		}
		switch {
		case f.kind == kindMessage && len(fds) == 0:
			select {
			case g.msgs <- append([]byte(nil), f.payload...):
			case <-g.quit:
				return
			}
		case f.kind == kindDoorbell && len(fds) == 1:
			g.mu.Lock()
			if old, ok := g.bells[f.word]; ok {
				unix.Close(old)
			}
			g.bells[f.word] = fds[0]
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

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// interruptLoop is the guest's SINT 2 handler: on each interrupt it drains
// the event flags and wakes each flagged channel.
func (g *Guest) interruptLoop() {
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

// PostMessage is HvPostMessage.
func (g *Guest) PostMessage(connID uint32, payload []byte) error {
	if len(payload) > 240 {
		return fmt.Errorf("xproc: %d-byte message exceeds 240", len(payload))
	}
	if _, _, err := g.conn.WriteMsgUnix(appendFrame(nil, kindPost, connID, payload), nil, nil); err != nil {
		return fmt.Errorf("%w: %w", vmbus.ErrTransportClosed, err)
	}
	return nil
}

// RecvMessage returns the next message from the host.
func (g *Guest) RecvMessage() ([]byte, error) {
	select {
	case m := <-g.msgs:
		return m, nil
	case <-g.done:
		select {
		case m := <-g.msgs:
			return m, nil
		default:
			return nil, vmbus.ErrTransportClosed
		}
	}
}

// SignalEvent is HvSignalEvent: it rings the host's doorbell for connID.
func (g *Guest) SignalEvent(connID uint32) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	fd, ok := g.bells[connID]
	if !ok {
		return fmt.Errorf("%w: %#x", vmbus.ErrInvalidConnectionID, connID)
	}
	return writeEvent(fd)
}

// EventWaiter returns the waiter for event flag flag.
func (g *Guest) EventWaiter(flag uint32) (vmbus.Doorbell, error) {
	if flag == 0 || flag >= synic.FlagsPerSlot {
		return nil, fmt.Errorf("xproc: event flag %d out of range", flag)
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

// Close detaches the guest: pending calls return.
func (g *Guest) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	close(g.quit)
	for _, fd := range g.bells {
		unix.Close(fd)
	}
	g.bells = map[uint32]int{}
	waiters := g.waiters
	g.waiters = map[uint32]*ring.Event{}
	g.mu.Unlock()
	for _, w := range waiters {
		w.Close()
	}
	g.irq.Close()
	return g.conn.Close()
}
