package xproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// RelayHandler receives what the host sends down a guest's socket, in
// socket order. Calls come from one goroutine (Interrupt from another).
type RelayHandler interface {
	// Message is a SINT 2 message for virtual processor vp. payload is
	// only valid during the call. It may block, which stops the relay
	// reading the socket (and so, in time, the host writing); it returns
	// false to stop the relay for good.
	Message(vp uint32, payload []byte) bool
	// Doorbell hands over the eventfd that rings the host's doorbell for
	// connection id connID; the handler owns fd from here.
	Doorbell(connID uint32, fd int)
	// DoorbellGone says the host closed connID's doorbell.
	DoorbellGone(connID uint32)
	// Interrupt says the host set event flags in the event-flags page and
	// asserted SINT 2.
	Interrupt()
}

// Relay is the guest end of the transport without a guest behind it: it
// says hello, hands what the host sends to a RelayHandler and posts what
// it is given. A worker that runs the VMBus client inside a partition
// uses it to carry the partition's messages, doorbells and interrupts
// between the root and the vCPUs; Guest builds the in-process guest side
// on it.
type Relay struct {
	conn     *net.UnixConn
	rc       syscall.RawConn
	irq      *os.File // the SINT 2 interrupt eventfd, read through the runtime poller
	h        RelayHandler
	readDone chan struct{} // closed when the socket reader returns
	irqDone  chan struct{} // closed when the interrupt reader returns

	closeOnce sync.Once
	closeErr  error
}

// NewRelay attaches to the host over conn, the socket end NewHost returned
// (the relay uses its own duplicate; the caller keeps conn), and says
// hello: siefpGPA is the guest physical address of the event-flags page
// the host sets channel flags in.
func NewRelay(conn *os.File, siefpGPA uint64, h RelayHandler) (*Relay, error) {
	if siefpGPA%4096 != 0 {
		return nil, fmt.Errorf("xproc: event-flags page %#x not page aligned", siefpGPA)
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
	r := &Relay{conn: uc, rc: rc, h: h,
		irq:      os.NewFile(uintptr(efd), "vmbus-interrupt"),
		readDone: make(chan struct{}),
		irqDone:  make(chan struct{}),
	}
	if _, _, err := uc.WriteMsgUnix(helloFrame(siefpGPA), unix.UnixRights(efd), nil); err != nil {
		uc.Close()
		r.irq.Close()
		return nil, fmt.Errorf("xproc: hello: %w", err)
	}
	go r.readLoop()
	go r.interruptLoop()
	return r, nil
}

// readLoop hands host frames to the handler in socket order.
func (r *Relay) readLoop() {
	defer close(r.readDone)
	buf := make([]byte, frameBuffer)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, fds, flags, err := recvFrame(r.rc, buf, oob)
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
			if !r.h.Message(f.word, f.payload) {
				return
			}
		case f.kind == kindDoorbell && len(fds) == 1:
			r.h.Doorbell(f.word, fds[0])
		case f.kind == kindGone && len(fds) == 0:
			r.h.DoorbellGone(f.word)
		default:
			closeAll(fds)
		}
	}
}

// interruptLoop calls Interrupt each time the host asserts SINT 2.
func (r *Relay) interruptLoop() {
	defer close(r.irqDone)
	var b [8]byte
	for {
		if _, err := r.irq.Read(b[:]); err != nil {
			return
		}
		r.h.Interrupt()
	}
}

// ErrBusy: TryPostMessage found the socket full (the host is not reading).
var ErrBusy = errors.New("xproc: host's message queue is full")

// PostMessage is HvPostMessage with message type 1 (VMBus). It blocks while
// the socket is full.
func (r *Relay) PostMessage(connID uint32, payload []byte) error {
	f, err := postFrame(connID, payload)
	if err != nil {
		return err
	}
	if _, _, err := r.conn.WriteMsgUnix(f, nil, nil); err != nil {
		return fmt.Errorf("xproc: post: %w", err)
	}
	return nil
}

// TryPostMessage is PostMessage that returns ErrBusy rather than wait,
// for a caller that must not block on the host: a vCPU serving the
// program's HvPostMessage answers HV_STATUS_INSUFFICIENT_BUFFERS then, as
// Hyper-V does when the host's queue is full.
func (r *Relay) TryPostMessage(connID uint32, payload []byte) error {
	f, err := postFrame(connID, payload)
	if err != nil {
		return err
	}
	var serr error
	if err := r.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), f, nil, nil, unix.MSG_DONTWAIT)
		return true
	}); err != nil {
		return fmt.Errorf("xproc: post: %w", err)
	}
	switch {
	case serr == unix.EAGAIN:
		return ErrBusy
	case serr != nil:
		return fmt.Errorf("xproc: post: %w", serr)
	}
	return nil
}

// postFrame builds a post frame.
func postFrame(connID uint32, payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("xproc: %d-byte message exceeds %d", len(payload), MaxPayload)
	}
	return appendFrame(make([]byte, 0, headerSize+len(payload)), kindPost, connID, payload), nil
}

// HungUp is closed once the socket reader has stopped: the host hung up,
// the handler asked to stop, or the relay was closed.
func (r *Relay) HungUp() <-chan struct{} { return r.readDone }

// Close stops the relay and waits for its goroutines. A handler blocked
// in Message must be released by its owner first.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.closeErr = r.conn.Close()
		r.irq.Close()
		<-r.readDone
		<-r.irqDone
	})
	return r.closeErr
}
