package xproc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/partition/memory"
	"github.com/partita-hv/partita/vmbus"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vmbus/synic"
)

var _ vmbus.HostTransport = (*Host)(nil)

// HostStats counts the host side's traffic and faults.
type HostStats struct {
	MessagesIn     uint64 // guest posts delivered
	MessagesOut    uint64
	SignalsToGuest uint64 // interrupt eventfd writes (coalesced flags excluded)
	BadFrames      uint64 // guest frames dropped
}

// Host is the host end of the transport.
type Host struct {
	mem  *memory.Memory
	log  hclog.Logger
	conn *net.UnixConn

	in, out, signals, bad atomic.Uint64

	mu     sync.Mutex
	flags  *synic.EventFlags    // guarded by mu; set by the hello
	irq    int                  // guest interrupt eventfd, -1 until hello; guarded by mu
	bells  map[uint32]*doorbell // guarded by mu
	closed bool                 // guarded by mu
}

// NewHost makes the host end for guest memory mem and returns the guest's
// end of the message socket, to hand to the guest process (which passes it
// to Dial).
func NewHost(mem *memory.Memory, log hclog.Logger) (*Host, *os.File, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	conn, err := fileConn(fds[0], "vmbus-host")
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	h := &Host{mem: mem, log: log.Named("xproc"), conn: conn, irq: -1, bells: make(map[uint32]*doorbell)}
	return h, os.NewFile(uintptr(fds[1]), "vmbus-guest"), nil
}

// fileConn turns a socket fd into a *net.UnixConn served by the runtime
// poller; fd is consumed.
func fileConn(fd int, name string) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", name, err)
	}
	return c.(*net.UnixConn), nil
}

// Memory is the partition's guest memory.
func (h *Host) Memory() *memory.Memory { return h.mem }

// VPCount is 1: the guest process is one virtual processor.
func (h *Host) VPCount() uint32 { return 1 }

// Stats returns the counters.
func (h *Host) Stats() HostStats {
	return HostStats{MessagesIn: h.in.Load(), MessagesOut: h.out.Load(), SignalsToGuest: h.signals.Load(), BadFrames: h.bad.Load()}
}

// RecvMessage returns the next message the guest posted, handling hello
// frames and dropping bad frames on the way.
func (h *Host) RecvMessage() (uint32, []byte, error) {
	buf := make([]byte, frameBuffer)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, flags, _, err := h.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return 0, nil, h.closedOr(err)
		}
		if n == 0 && oobn == 0 {
			return 0, nil, vmbus.ErrTransportClosed // guest closed its end
		}
		fds := rights(oob[:oobn])
		if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			h.badFrame(fds, fmt.Errorf("%w: truncated (flags %#x)", ErrBadFrame, flags))
			continue
		}
		f, err := parseGuestFrame(buf[:n])
		if err != nil {
			h.badFrame(fds, err)
			continue
		}
		switch f.kind {
		case kindHello:
			if err := h.hello(f.siefpGPA, fds); err != nil {
				h.badFrame(fds, err)
			}
		case kindPost:
			if len(fds) != 0 {
				h.badFrame(fds, fmt.Errorf("%w: post carries %d fds", ErrBadFrame, len(fds)))
				continue
			}
			h.in.Add(1)
			return f.connID, append([]byte(nil), f.payload...), nil
		}
	}
}

// rights extracts the fds of an SCM_RIGHTS control message.
func rights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if f, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

func (h *Host) badFrame(fds []int, err error) {
	for _, fd := range fds {
		unix.Close(fd)
	}
	h.bad.Add(1)
	h.log.Warn("dropped guest frame", "error", err)
}

// hello records the guest's event-flags page and interrupt eventfd.
func (h *Host) hello(gpa uint64, fds []int) error {
	if len(fds) != 1 {
		return fmt.Errorf("%w: hello with %d fds", ErrBadFrame, len(fds))
	}
	if gpa%memory.PageSize != 0 {
		return fmt.Errorf("%w: event-flags page %#x not page aligned", ErrBadFrame, gpa)
	}
	page, err := h.mem.Slice(gpa, memory.PageSize)
	if err != nil {
		return fmt.Errorf("%w: event-flags page: %w", ErrBadFrame, err)
	}
	flags, err := synic.NewEventFlags(page)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.irq >= 0 {
		return fmt.Errorf("%w: second hello", ErrBadFrame)
	}
	h.flags, h.irq = flags, fds[0]
	return nil
}

func (h *Host) closedOr(err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return vmbus.ErrTransportClosed
	}
	return err
}

// PostMessage delivers a message to the guest.
func (h *Host) PostMessage(vp uint32, payload []byte) error {
	if vp >= h.VPCount() {
		return fmt.Errorf("xproc: vp %d of %d", vp, h.VPCount())
	}
	if len(payload) > 240 {
		return fmt.Errorf("xproc: %d-byte message exceeds 240", len(payload))
	}
	if _, _, err := h.conn.WriteMsgUnix(appendFrame(nil, kindMessage, vp, payload), nil, nil); err != nil {
		return h.closedOr(err)
	}
	h.out.Add(1)
	return nil
}

// SignalGuest sets flag in the guest's event-flags page and interrupts the
// guest if the flag was clear.
func (h *Host) SignalGuest(vp, flag uint32) error {
	if vp >= h.VPCount() {
		return fmt.Errorf("xproc: vp %d of %d", vp, h.VPCount())
	}
	// The lock keeps Close from closing irq (and the number being reused)
	// under the write.
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.flags == nil || h.irq < 0 {
		return errors.New("xproc: guest has no event-flags page")
	}
	wasClear, err := h.flags.Set(flag)
	if err != nil || !wasClear {
		return err
	}
	h.signals.Add(1)
	return writeEvent(h.irq)
}

// writeEvent adds 1 to an eventfd.
func writeEvent(fd int) error {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	_, err := unix.Write(fd, one[:])
	return err
}

// RegisterDoorbell creates the eventfd for connID and hands a copy to the
// guest before returning, so the guest knows it before any later message.
func (h *Host) RegisterDoorbell(connID uint32) (vmbus.Doorbell, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, vmbus.ErrTransportClosed
	}
	if _, dup := h.bells[connID]; dup {
		return nil, fmt.Errorf("xproc: connection id %#x already has a doorbell", connID)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if _, _, err := h.conn.WriteMsgUnix(appendFrame(nil, kindDoorbell, connID, nil), unix.UnixRights(efd), nil); err != nil {
		unix.Close(efd)
		return nil, err
	}
	d := &doorbell{h: h, connID: connID, f: os.NewFile(uintptr(efd), fmt.Sprintf("doorbell-%#x", connID))}
	h.bells[connID] = d
	return d, nil
}

// doorbell is the host's end of one connection id.
type doorbell struct {
	h      *Host
	connID uint32
	f      *os.File // nonblocking eventfd, read through the runtime poller
	once   sync.Once
}

// Wait blocks until the guest signals, or returns ring.ErrClosed.
func (d *doorbell) Wait() error {
	var b [8]byte
	if _, err := d.f.Read(b[:]); err != nil {
		return fmt.Errorf("%w: doorbell %#x: %w", ring.ErrClosed, d.connID, err)
	}
	return nil
}

// Close stops the doorbell and tells the guest.
func (d *doorbell) Close() error {
	d.once.Do(func() {
		d.f.Close()
		h := d.h
		h.mu.Lock()
		delete(h.bells, d.connID)
		closed := h.closed
		h.mu.Unlock()
		if !closed {
			h.conn.WriteMsgUnix(appendFrame(nil, kindGone, d.connID, nil), nil, nil)
		}
	})
	return nil
}

// Close shuts the transport: pending RecvMessage and Wait calls return.
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
	h.irq = -1
	h.mu.Unlock()
	for _, d := range bells {
		d.Close()
	}
	if irq >= 0 {
		unix.Close(irq)
	}
	return h.conn.Close()
}
