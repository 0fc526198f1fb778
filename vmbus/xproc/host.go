package xproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vmbus/synic"
)

var _ vmbus.HostTransport = (*Host)(nil)

// ErrNoHello: SignalGuest before the guest has said where its event-flags
// page is.
var ErrNoHello = errors.New("xproc: guest has not sent its hello")

// HostStats counts the host side's traffic and faults.
type HostStats struct {
	MessagesIn     uint64 // guest posts returned by RecvMessage
	MessagesOut    uint64 // messages sent by PostMessage
	SignalsToGuest uint64 // interrupt eventfd writes (flags already set coalesce)
	BadFrames      uint64 // guest frames dropped
}

// loggedBadFrames bounds the warnings a misbehaving guest can cause; later
// bad frames are logged at debug level (and all are counted).
const loggedBadFrames = 16

// Host is the host end of the transport.
type Host struct {
	mem  *guestmem.Memory
	log  hclog.Logger
	conn *net.UnixConn
	rc   syscall.RawConn // conn's descriptor, for recvmsg

	in, out, signals, bad atomic.Uint64

	// wmu orders doorbell and gone frames on the socket with the changes
	// to bells that they announce. Taken before mu.
	wmu sync.Mutex

	mu     sync.Mutex
	flags  *synic.EventFlags    // guarded by mu; set by the hello
	irq    int                  // guest's interrupt eventfd, -1 before the hello; guarded by mu
	bells  map[uint32]*doorbell // guarded by mu; changed only with wmu held too
	closed bool                 // guarded by mu
}

// NewHost makes the host end of a transport for guest memory mem. It
// returns the guest's end of the message socket, to hand to the guest
// process (which passes it to Dial); the caller closes it once handed on.
func NewHost(mem *guestmem.Memory, log hclog.Logger) (*Host, *os.File, error) {
	if mem == nil {
		return nil, nil, errors.New("xproc: no guest memory")
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	hf := os.NewFile(uintptr(fds[0]), "vmbus-host")
	defer hf.Close() // the conn holds a duplicate
	gf := os.NewFile(uintptr(fds[1]), "vmbus-guest")
	conn, rc, err := seqpacketConn(hf)
	if err != nil {
		gf.Close()
		return nil, nil, err
	}
	h := &Host{mem: mem, log: log.Named("xproc"), conn: conn, rc: rc, irq: -1, bells: make(map[uint32]*doorbell)}
	return h, gf, nil
}

// Memory is the partition's guest memory.
func (h *Host) Memory() *guestmem.Memory { return h.mem }

// VPCount is 1: the guest process is one virtual processor.
func (h *Host) VPCount() uint32 { return 1 }

// Stats returns the counters.
func (h *Host) Stats() HostStats {
	return HostStats{MessagesIn: h.in.Load(), MessagesOut: h.out.Load(), SignalsToGuest: h.signals.Load(), BadFrames: h.bad.Load()}
}

// RecvMessage returns the next message the guest posted, taking the hello
// and dropping bad frames on the way. It is not safe for concurrent use
// with itself. Once the transport is closed, or the guest has hung up, it
// returns vmbus.ErrTransportClosed.
func (h *Host) RecvMessage() (uint32, []byte, error) {
	buf := make([]byte, frameBuffer)
	// Room for one fd (8-byte alignment makes room for two); the kernel
	// drops fds beyond that and sets MSG_CTRUNC.
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, fds, flags, err := recvFrame(h.rc, buf, oob)
		if err != nil {
			return 0, nil, h.closedErr(err)
		}
		connID, payload, err := h.frame(buf[:n], fds, flags)
		if err != nil {
			h.badFrame(fds, err)
			continue
		}
		if payload != nil {
			h.in.Add(1)
			return connID, payload, nil
		}
	}
}

// frame handles one guest frame with the fds that came with it. It returns
// a post's connection id and a copy of its payload (non-nil, possibly
// empty), or nothing for a hello, or an error for a bad frame, whose fds
// the caller then closes.
func (h *Host) frame(b []byte, fds []int, flags int) (uint32, []byte, error) {
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return 0, nil, fmt.Errorf("%w: truncated (flags %#x)", ErrBadFrame, flags)
	}
	f, err := parseGuestFrame(b)
	if err != nil {
		return 0, nil, err
	}
	switch f.kind {
	case kindHello:
		return 0, nil, h.hello(f.siefpGPA, fds)
	default: // kindPost
		if len(fds) != 0 {
			return 0, nil, fmt.Errorf("%w: post carries %d fds", ErrBadFrame, len(fds))
		}
		return f.connID, append(make([]byte, 0, len(f.payload)), f.payload...), nil
	}
}

func (h *Host) badFrame(fds []int, err error) {
	closeAll(fds)
	n := h.bad.Add(1)
	if n <= loggedBadFrames {
		h.log.Warn("dropped guest frame", "error", err, "bad_frames", n)
	} else {
		h.log.Debug("dropped guest frame", "error", err, "bad_frames", n)
	}
}

// checkSIEFP checks the event-flags page a guest names in its hello and
// returns it.
func checkSIEFP(mem *guestmem.Memory, gpa uint64) ([]byte, error) {
	if gpa%guestmem.PageSize != 0 {
		return nil, fmt.Errorf("%w: event-flags page %#x not page aligned", ErrBadFrame, gpa)
	}
	page, err := mem.Slice(gpa, guestmem.PageSize)
	if err != nil {
		return nil, fmt.Errorf("%w: event-flags page: %w", ErrBadFrame, err)
	}
	return page, nil
}

// hello records the guest's event-flags page and interrupt eventfd. On
// success it keeps fds[0]; on error the caller closes fds.
func (h *Host) hello(gpa uint64, fds []int) error {
	if len(fds) != 1 {
		return fmt.Errorf("%w: hello with %d fds", ErrBadFrame, len(fds))
	}
	if !isEventfd(fds[0]) {
		return fmt.Errorf("%w: hello's interrupt fd is not an eventfd", ErrBadFrame)
	}
	page, err := checkSIEFP(h.mem, gpa)
	if err != nil {
		return err
	}
	flags, err := synic.NewEventFlags(page)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadFrame, err)
	}
	// The guest made it nonblocking, but the file description is the
	// guest's to change: make sure SignalGuest never blocks on it.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		return fmt.Errorf("%w: interrupt eventfd: %w", ErrBadFrame, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.irq >= 0 {
		return fmt.Errorf("%w: second hello", ErrBadFrame)
	}
	if h.closed {
		return vmbus.ErrTransportClosed
	}
	h.flags, h.irq = flags, fds[0]
	h.log.Debug("guest hello", "siefp", fmt.Sprintf("%#x", gpa))
	return nil
}

// closedErr maps a socket error to vmbus.ErrTransportClosed.
func (h *Host) closedErr(err error) error {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return vmbus.ErrTransportClosed
	}
	return fmt.Errorf("%w: %w", vmbus.ErrTransportClosed, err)
}

// PostMessage sends a message to the guest's SINT 2 on vp.
func (h *Host) PostMessage(vp uint32, payload []byte) error {
	if vp >= h.VPCount() {
		return fmt.Errorf("xproc: message to vp %d of %d", vp, h.VPCount())
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("xproc: %d-byte message exceeds %d", len(payload), MaxPayload)
	}
	if _, _, err := h.conn.WriteMsgUnix(appendFrame(make([]byte, 0, headerSize+len(payload)), kindMessage, vp, payload), nil, nil); err != nil {
		return h.closedErr(err)
	}
	h.out.Add(1)
	return nil
}

// SignalGuest sets flag in the SINT 2 slot of the guest's event-flags page
// and, if it was clear, interrupts the guest. Before the guest's hello it
// returns ErrNoHello.
func (h *Host) SignalGuest(vp, flag uint32) error {
	if vp >= h.VPCount() {
		return fmt.Errorf("xproc: signal to vp %d of %d", vp, h.VPCount())
	}
	// Holding mu keeps Close from closing irq (and the number from being
	// reused) under the write; the write never blocks.
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return vmbus.ErrTransportClosed
	}
	if h.irq < 0 {
		return ErrNoHello
	}
	wasClear, err := h.flags.Set(flag)
	if err != nil {
		return fmt.Errorf("xproc: flag %d: %w", flag, err)
	}
	if !wasClear {
		return nil // the guest has yet to drain the earlier interrupt
	}
	h.signals.Add(1)
	return writeEvent(h.irq)
}

// RegisterDoorbell creates the eventfd behind connID and sends the guest
// its copy before returning, so the guest knows the doorbell before any
// message the caller sends next.
func (h *Host) RegisterDoorbell(connID uint32) (vmbus.Doorbell, error) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.mu.Lock()
	closed, dup := h.closed, h.bells[connID] != nil
	h.mu.Unlock()
	if closed {
		return nil, vmbus.ErrTransportClosed
	}
	if dup {
		return nil, fmt.Errorf("xproc: connection id %#x already has a doorbell", connID)
	}
	efd, err := newEventfd()
	if err != nil {
		return nil, err
	}
	if _, _, err := h.conn.WriteMsgUnix(appendFrame(nil, kindDoorbell, connID, nil), unix.UnixRights(efd), nil); err != nil {
		unix.Close(efd)
		return nil, h.closedErr(err)
	}
	d := &doorbell{h: h, connID: connID, f: os.NewFile(uintptr(efd), fmt.Sprintf("doorbell-%#x", connID))}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		d.f.Close()
		return nil, vmbus.ErrTransportClosed
	}
	h.bells[connID] = d
	return d, nil
}

// doorbell is the host's end of one connection id: an eventfd the guest
// writes.
type doorbell struct {
	h      *Host
	connID uint32
	f      *os.File // nonblocking eventfd, read through the runtime poller

	once sync.Once
	err  error // Close's result
}

// Wait blocks until the guest signals, or returns ring.ErrClosed once the
// doorbell or the transport is closed.
func (d *doorbell) Wait() error {
	var b [8]byte
	if _, err := d.f.Read(b[:]); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return ring.ErrClosed
		}
		return fmt.Errorf("%w: doorbell %#x: %w", ring.ErrClosed, d.connID, err)
	}
	return nil
}

// Close stops the doorbell, wakes a blocked Wait and tells the guest to
// forget the connection id.
func (d *doorbell) Close() error {
	d.once.Do(func() { d.err = d.h.dropDoorbell(d) })
	return d.err
}

func (h *Host) dropDoorbell(d *doorbell) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.mu.Lock()
	if h.bells[d.connID] == d {
		delete(h.bells, d.connID)
	}
	closed := h.closed
	h.mu.Unlock()
	d.f.Close()
	if closed {
		return nil
	}
	if _, _, err := h.conn.WriteMsgUnix(appendFrame(nil, kindGone, d.connID, nil), nil, nil); err != nil {
		return h.closedErr(err)
	}
	return nil
}

// Close shuts the transport down: pending and later RecvMessage calls
// return vmbus.ErrTransportClosed and doorbells' Wait ring.ErrClosed. It
// does not close the guest memory.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	bells := h.bells
	h.bells = map[uint32]*doorbell{}
	irq := h.irq
	h.irq, h.flags = -1, nil
	h.mu.Unlock()
	err := h.conn.Close() // unblocks readers and writers, which may hold wmu
	for _, d := range bells {
		d.Close()
	}
	if irq >= 0 {
		unix.Close(irq)
	}
	return err
}
