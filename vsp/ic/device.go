// Package ic is the host side of the integration services: heartbeat,
// shutdown, time sync and key-value pair exchange, in Hyper-V's IC
// framing (package vmbus/ic). A Device runs one IC channel: it negotiates
// the framework and service versions, then hands the channel to its
// service, which sends requests and reads the guest's answers one
// transaction at a time.
//
// The guest is hostile: an answer that does not parse, a packet that is
// not an in-band answer to the outstanding request, or a negotiation
// outside what the host offered is counted and fails the channel.
package ic

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/ic"
	"github.com/partita-hv/partita/vmbus/packet"
	"github.com/partita-hv/partita/vmbus/ring"
)

// ErrNotConnected: the guest has not opened and negotiated the channel.
var ErrNotConnected = errors.New("the guest has not connected this integration service")

// errGuest marks an answer that breaks the protocol.
var errGuest = errors.New("guest protocol violation")

// Service is what an IC does once its channel is negotiated.
type Service interface {
	// Type is the IC message type the service speaks.
	Type() uint16
	// Versions lists the service versions the host offers, newest first.
	Versions() []ic.Version
	// Run drives the channel until ctx is done or it fails.
	Run(ctx context.Context, c *Conn) error
}

// Offer describes an IC channel to the channel server.
func Offer(typ, instance [16]byte) host.OfferSpec {
	spec := host.OfferSpec{InterfaceType: typ, InterfaceInstance: instance, Flags: ic.OfferFlags}
	spec.UserDefined[0] = ic.PipeMessageMode
	return spec
}

// Device is one IC channel's host side.
type Device struct {
	Service Service

	faults atomic.Uint64

	mu     sync.Mutex
	conn   *Conn         // negotiated; guarded by mu
	cancel func()        // stops the open channel's goroutine; guarded by mu
	done   chan struct{} // closed when it returns; guarded by mu
}

// Faults counts guest protocol violations.
func (d *Device) Faults() uint64 { return d.faults.Load() }

// Conn returns the negotiated channel, or nil.
func (d *Device) Conn() *Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

// Open starts negotiating on a channel the guest opened.
func (d *Device) Open(ch *host.Channel) error {
	ctx, cancel := context.WithCancel(context.Background())
	d.mu.Lock()
	d.cancel, d.done = cancel, make(chan struct{})
	done := d.done
	d.mu.Unlock()
	go func() {
		defer close(done)
		c := newConn(ch.Endpoint(), d.Service.Type(), func(err error) {
			d.faults.Add(1)
			ch.Fail(err)
		})
		// The reader touches the rings until the endpoint closes, which
		// the server does before it calls Close; Close returns (and the
		// server unmaps the rings) only after it has stopped.
		defer c.stopReader()
		err := c.negotiate(ctx, d.Service.Versions())
		if err == nil {
			d.mu.Lock()
			d.conn = c
			d.mu.Unlock()
			err = d.Service.Run(ctx, c)
			d.mu.Lock()
			d.conn = nil
			d.mu.Unlock()
		}
		c.check(err)
	}()
	return nil
}

// Close stops the channel's goroutine.
func (d *Device) Close(*host.Channel) {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Conn is a negotiated IC channel.
type Conn struct {
	ep        *ring.Endpoint
	typ       uint16
	Framework ic.Version
	Version   ic.Version // the service version agreed

	mu      sync.Mutex // one transaction at a time
	tid     uint64
	pending atomic.Uint64 // transaction id awaiting its answer, 0 if none
	replies chan []byte   // answers, from the reader
	readErr chan error    // the reader's end
	stop    chan struct{} // closed to release a reader blocked on replies
	stopped chan struct{} // closed when the reader returns

	fault     func(error) // counts a guest violation and fails the channel
	faultOnce sync.Once
}

// check reports err to the device if it is the guest's fault (once per
// channel), and returns it.
func (c *Conn) check(err error) error {
	if errors.Is(err, errGuest) && c.fault != nil {
		c.faultOnce.Do(func() { c.fault(err) })
	}
	return err
}

func newConn(ep *ring.Endpoint, typ uint16, fault func(error)) *Conn {
	c := &Conn{ep: ep, typ: typ, fault: fault, replies: make(chan []byte, 1), readErr: make(chan error, 1),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go c.reader()
	return c
}

// stopReader waits for the reader to return: it does once the endpoint
// is closed.
func (c *Conn) stopReader() {
	close(c.stop)
	<-c.stopped
}

// reader passes the answers to the outstanding request on. A packet that
// is not one fails the channel at once.
func (c *Conn) reader() {
	defer close(c.stopped)
	end := func(err error) {
		c.check(err)
		c.readErr <- err // the only send: the buffer has room
	}
	buf := make([]byte, ic.MaxMessage+packet.DescriptorSize+64)
	var p packet.Packet
	for {
		n, err := c.ep.Recv(buf)
		if err != nil {
			end(err)
			return
		}
		if err := packet.Parse(buf[:n], &p); err != nil {
			end(fmt.Errorf("%w: %v", errGuest, err))
			return
		}
		if p.Type != packet.TypeDataInband || p.TransID == 0 || p.TransID != c.pending.Load() {
			end(fmt.Errorf("%w: %v packet, transaction %d, none or another outstanding", errGuest, p.Type, p.TransID))
			return
		}
		c.pending.Store(0)
		select {
		case c.replies <- append([]byte(nil), p.Payload...):
		case <-c.stop:
			return
		}
	}
}

// Transact sends a request and waits for its answer, or for ctx. An
// answer of the wrong type, or not marked a response, is the guest's
// fault.
func (c *Conn) Transact(ctx context.Context, typ uint16, body []byte, size int) (ic.Message, error) {
	m, err := c.transact(ctx, typ, body, size)
	return m, c.check(err)
}

func (c *Conn) transact(ctx context.Context, typ uint16, body []byte, size int) (ic.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending.Load() != 0 {
		// A request that timed out is still outstanding: its answer comes first.
		if _, err := c.wait(ctx); err != nil {
			return ic.Message{}, err
		}
	}
	c.tid++
	req := ic.Build(ic.Header{Framework: c.Framework, Type: typ, Message: c.Version, TransID: uint8(c.tid),
		Flags: ic.FlagTransaction | ic.FlagRequest}, body, size)
	c.pending.Store(c.tid)
	if err := c.ep.Send(packet.TypeDataInband, 0, c.tid, nil, req); err != nil {
		c.pending.Store(0)
		return ic.Message{}, err
	}
	b, err := c.wait(ctx)
	if err != nil {
		return ic.Message{}, err
	}
	m, err := ic.Parse(b)
	if err != nil {
		return ic.Message{}, fmt.Errorf("%w: %v", errGuest, err)
	}
	if m.Type != typ || m.Flags&ic.FlagResponse == 0 || m.TransID != uint8(c.tid) {
		return ic.Message{}, fmt.Errorf("%w: answer type %d flags %#x transaction %d to a type %d request %d", errGuest, m.Type, m.Flags, m.TransID, typ, uint8(c.tid))
	}
	return m, nil
}

// wait takes the next answer.
func (c *Conn) wait(ctx context.Context) ([]byte, error) {
	select {
	case b := <-c.replies:
		return b, nil
	case err := <-c.readErr:
		c.readErr <- err // for later calls
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// negotiate offers the frameworks and versions and checks the guest's
// choice.
func (c *Conn) negotiate(ctx context.Context, versions []ic.Version) error {
	offer := ic.Negotiation{Frameworks: ic.Frameworks, Services: versions}
	m, err := c.transact(ctx, ic.TypeNegotiate, ic.EncodeNegotiation(offer), 256)
	if err != nil {
		return err
	}
	n, err := ic.ParseNegotiation(m.Body)
	if err != nil {
		return fmt.Errorf("%w: %v", errGuest, err)
	}
	if len(n.Frameworks) != 1 || len(n.Services) != 1 {
		return fmt.Errorf("%w: the guest supports none of the versions offered", errGuest)
	}
	fw, ok1 := ic.Pick(n.Frameworks, ic.Frameworks)
	v, ok2 := ic.Pick(n.Services, versions)
	if !ok1 || !ok2 {
		return fmt.Errorf("%w: the guest chose %v/%v, not offered", errGuest, n.Frameworks[0], n.Services[0])
	}
	c.Framework, c.Version = fw, v
	return nil
}
