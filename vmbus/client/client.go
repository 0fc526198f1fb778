// Package client is the guest side of VMBus: it connects to the host
// (version negotiation, newest version first, as Linux does), receives the
// channel offers, establishes GPADLs for ring buffers, opens channels and
// closes them again, and handles rescinds and unload. It runs over a
// vmbus.GuestTransport and knows nothing of KVM, so the same code serves a
// Generation 2 guest and host-side tests and benchmarks.
//
// One goroutine reads control messages and hands each either to the request
// waiting for it (a version response, GPADL_CREATED, an open result, ...) or
// to the offer table. Client state is guarded by Client.mu.
package client

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus"
	"github.com/partita-hv/partita/vmbus/chanmsg"
	"github.com/partita-hv/partita/vmbus/ring"
)

// Errors.
var (
	ErrNoVersion = errors.New("vmbus client: host accepted no protocol version")
	ErrTimeout   = errors.New("vmbus client: no answer from host")
	ErrClosed    = errors.New("vmbus client: closed")
	ErrRefused   = errors.New("vmbus client: host refused")
	ErrRescinded = errors.New("vmbus client: channel rescinded")
	ErrUnknown   = errors.New("vmbus client: no such offer")
)

// Config tunes a Client.
type Config struct {
	// Pages hands out the guest pages for ring buffers.
	Pages *guestmem.PageAllocator
	// Versions to try, newest first. Default chanmsg.SupportedVersions.
	Versions []chanmsg.Version
	// TargetVCPU receives control messages and channel interrupts.
	TargetVCPU uint32
	// Timeout bounds each wait for the host. Default 10 s.
	Timeout time.Duration
	// Endpoint configures each open channel's ring endpoint.
	Endpoint ring.EndpointConfig
}

// firstGPADL is where GPADL ids start (as in Linux, any non-zero works).
const firstGPADL = 0xE1E10

// Client is a connected VMBus guest.
type Client struct {
	t       vmbus.GuestTransport
	mem     vmbus.GuestMemory
	cfg     Config
	version chanmsg.Version
	msgConn uint32 // connection id for control messages after contact

	done chan struct{} // closed when the reader stops
	err  error         // why; written before done closes

	mu        sync.Mutex
	offers    map[uint32]*Offer // by relid
	waiters   []*waiter
	nextGPADL uint32
}

// Offer is a channel the host offered.
type Offer struct {
	chanmsg.OfferChannel
	rescinded chan struct{}
	open      *Channel // guarded by Client.mu
}

type waiter struct {
	match func(chanmsg.Message) bool
	ch    chan chanmsg.Message
}

// Connect negotiates a protocol version with the host and waits until all
// offers have been delivered.
func Connect(t vmbus.GuestTransport, cfg Config) (*Client, error) {
	if cfg.Pages == nil {
		return nil, errors.New("vmbus client: Config.Pages is required")
	}
	if len(cfg.Versions) == 0 {
		cfg.Versions = chanmsg.SupportedVersions
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	c := &Client{
		t: t, mem: t.Memory(), cfg: cfg,
		done:      make(chan struct{}),
		offers:    make(map[uint32]*Offer),
		nextGPADL: firstGPADL,
	}
	go c.readLoop()
	if err := c.negotiate(); err != nil {
		return nil, err
	}
	w := c.expect(func(m chanmsg.Message) bool { _, ok := m.(*chanmsg.AllOffersDelivered); return ok })
	if _, err := c.call(w, &chanmsg.RequestOffers{}); err != nil {
		return nil, fmt.Errorf("request offers: %w", err)
	}
	return c, nil
}

// negotiate tries each version, newest first (Linux's order).
func (c *Client) negotiate() error {
	for _, v := range c.cfg.Versions {
		ic := chanmsg.NewInitiateContact(v, c.cfg.TargetVCPU, 0, 0)
		conn := uint32(chanmsg.MessageConnectionID)
		if v >= chanmsg.Version5_0 {
			ic.SetMsgSINT(chanmsg.VMBusMessageSINT, 0)
			conn = chanmsg.MessageConnectionID4
		}
		w := c.expect(func(m chanmsg.Message) bool { _, ok := m.(*chanmsg.VersionResponse); return ok })
		if err := c.t.PostMessage(conn, ic.AppendTo(nil)); err != nil {
			c.cancel(w)
			if errors.Is(err, vmbus.ErrInvalidConnectionID) {
				continue // host does not speak this version family
			}
			return fmt.Errorf("initiate contact %v: %w", v, err)
		}
		m, err := c.wait(w)
		if err != nil {
			return fmt.Errorf("initiate contact %v: %w", v, err)
		}
		if resp := m.(*chanmsg.VersionResponse); resp.VersionSupported {
			c.version = v
			c.msgConn = chanmsg.MessageConnectionID
			if v >= chanmsg.Version5_0 {
				c.msgConn = resp.MsgConnID
			}
			return nil
		}
	}
	return ErrNoVersion
}

// Version is the negotiated protocol version.
func (c *Client) Version() chanmsg.Version { return c.version }

// Offers returns the live offers, by relid.
func (c *Client) Offers() []*Offer {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Offer, 0, len(c.offers))
	for _, o := range c.offers {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ChildRelID < out[j].ChildRelID })
	return out
}

// Find returns the first live offer of the given interface type.
func (c *Client) Find(ifType chanmsg.GUID) (*Offer, error) {
	for _, o := range c.Offers() {
		if o.InterfaceType == ifType {
			return o, nil
		}
	}
	return nil, fmt.Errorf("%w: interface %v", ErrUnknown, ifType)
}

// readLoop dispatches control messages from the host.
func (c *Client) readLoop() {
	defer close(c.done)
	for {
		payload, err := c.t.RecvMessage()
		if err != nil {
			c.err = err
			return
		}
		m, err := chanmsg.Decode(payload)
		if err != nil {
			continue // a host bug; nothing to answer
		}
		c.dispatch(m)
	}
}

func (c *Client) dispatch(m chanmsg.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, w := range c.waiters {
		if w.match(m) {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			w.ch <- m
			return
		}
	}
	switch m := m.(type) {
	case *chanmsg.OfferChannel:
		if _, dup := c.offers[m.ChildRelID]; !dup {
			c.offers[m.ChildRelID] = &Offer{OfferChannel: *m, rescinded: make(chan struct{})}
		}
	case *chanmsg.RescindChannelOffer:
		o := c.offers[m.ChildRelID]
		if o == nil {
			return
		}
		delete(c.offers, m.ChildRelID)
		close(o.rescinded)
		if o.open != nil {
			o.open.rescind() // Close releases the relid
		} else {
			go c.post(&chanmsg.RelIDReleased{ChildRelID: m.ChildRelID})
		}
	}
}

// expect registers interest in a reply before the request is sent.
func (c *Client) expect(match func(chanmsg.Message) bool) *waiter {
	w := &waiter{match: match, ch: make(chan chanmsg.Message, 1)}
	c.mu.Lock()
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	return w
}

func (c *Client) cancel(w *waiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.waiters {
		if x == w {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			return
		}
	}
}

func (c *Client) wait(w *waiter) (chanmsg.Message, error) {
	t := time.NewTimer(c.cfg.Timeout)
	defer t.Stop()
	select {
	case m := <-w.ch:
		return m, nil
	case <-t.C:
		c.cancel(w)
		return nil, ErrTimeout
	case <-c.done:
		return nil, errors.Join(ErrClosed, c.err)
	}
}

func (c *Client) post(m chanmsg.Message) error {
	return c.t.PostMessage(c.msgConn, m.AppendTo(nil))
}

// call posts m and waits for the reply w expects.
func (c *Client) call(w *waiter, m chanmsg.Message) (chanmsg.Message, error) {
	if err := c.post(m); err != nil {
		c.cancel(w)
		return nil, err
	}
	return c.wait(w)
}

// Disconnect closes every open channel and sends UNLOAD; the host closes
// its side and answers.
func (c *Client) Disconnect() error {
	c.mu.Lock()
	var open []*Channel
	for _, o := range c.offers {
		if o.open != nil {
			open = append(open, o.open)
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, ch := range open {
		errs = append(errs, ch.Close())
	}
	w := c.expect(func(m chanmsg.Message) bool { _, ok := m.(*chanmsg.UnloadResponse); return ok })
	_, err := c.call(w, &chanmsg.Unload{})
	return errors.Join(append(errs, err)...)
}

// Channel is an open channel.
type Channel struct {
	c      *Client
	offer  *Offer
	ep     *ring.Endpoint
	bell   vmbus.Doorbell
	gpadl  uint32
	gpa    uint64
	pages  int
	closed sync.Once

	mu        sync.Mutex
	rescinded bool // guarded by mu
}

// RingConfig sizes a channel's rings in pages, header page included.
type RingConfig struct {
	SendPages int // guest-to-host ring
	RecvPages int // host-to-guest ring
}

// Open establishes a GPADL over fresh ring pages and opens the channel.
func (c *Client) Open(o *Offer, rc RingConfig) (*Channel, error) {
	if rc.SendPages < 2 || rc.RecvPages < 2 {
		return nil, fmt.Errorf("vmbus client: rings need at least 2 pages each, got %d/%d", rc.SendPages, rc.RecvPages)
	}
	total := rc.SendPages + rc.RecvPages
	gpa, err := c.cfg.Pages.Alloc(total)
	if err != nil {
		return nil, err
	}
	ch := &Channel{c: c, offer: o, gpa: gpa, pages: total}
	if err := ch.open(rc); err != nil {
		c.cfg.Pages.Free(gpa, total)
		return nil, fmt.Errorf("open channel %d: %w", o.ChildRelID, err)
	}
	return ch, nil
}

func (ch *Channel) open(rc RingConfig) error {
	c, relid := ch.c, ch.offer.ChildRelID
	c.mu.Lock()
	if c.offers[relid] != ch.offer {
		c.mu.Unlock()
		return ErrRescinded
	}
	if ch.offer.open != nil {
		c.mu.Unlock()
		return errors.New("already open")
	}
	ch.offer.open = ch
	ch.gpadl = c.nextGPADL
	c.nextGPADL++
	c.mu.Unlock()
	undo := func() {
		c.mu.Lock()
		ch.offer.open = nil
		c.mu.Unlock()
	}

	mem, err := c.mem.Slice(ch.gpa, uint64(ch.pages)*ring.PageSize)
	if err != nil {
		undo()
		return err
	}
	send, recv := mem[:rc.SendPages*ring.PageSize], mem[rc.SendPages*ring.PageSize:]
	if err := ring.InitHeader(send); err != nil {
		undo()
		return err
	}
	if err := ring.InitHeader(recv); err != nil {
		undo()
		return err
	}
	if err := c.createGPADL(relid, ch.gpadl, ch.gpa, ch.pages); err != nil {
		undo()
		return err
	}
	bell, err := c.t.EventWaiter(relid)
	if err != nil {
		c.teardown(relid, ch.gpadl)
		undo()
		return err
	}
	w := c.expect(func(m chanmsg.Message) bool {
		r, ok := m.(*chanmsg.OpenChannelResult)
		return ok && r.ChildRelID == relid && r.OpenID == relid
	})
	m, err := c.call(w, &chanmsg.OpenChannel{
		ChildRelID:                     relid,
		OpenID:                         relid,
		RingBufferGPADL:                ch.gpadl,
		TargetVP:                       c.cfg.TargetVCPU,
		DownstreamRingBufferPageOffset: uint32(rc.SendPages),
	})
	if err == nil && m.(*chanmsg.OpenChannelResult).Status != chanmsg.StatusSuccess {
		err = fmt.Errorf("%w: open status %#x", ErrRefused, m.(*chanmsg.OpenChannelResult).Status)
	}
	if err != nil {
		bell.Close()
		c.teardown(relid, ch.gpadl)
		undo()
		return err
	}
	in, err := ring.NewReader(recv)
	if err != nil {
		return err
	}
	out, err := ring.NewWriter(send)
	if err != nil {
		return err
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.rescinded {
		bell.Close()
	}
	ch.bell = bell
	ch.ep = ring.NewEndpoint(in, out, hostSignal{c.t, ch.offer.ConnectionID}, bell, c.cfg.Endpoint)
	return nil
}

// createGPADL describes pages [gpa, gpa+pages) to the host as one range
// and waits for GPADL_CREATED.
func (c *Client) createGPADL(relid, id uint32, gpa uint64, pages int) error {
	pfns := make([]uint64, pages)
	for i := range pfns {
		pfns[i] = gpa/ring.PageSize + uint64(i)
	}
	hdr, bodies, err := chanmsg.SplitGPADL(relid, id, []chanmsg.GPARange{{ByteCount: uint32(pages * ring.PageSize), PFNs: pfns}})
	if err != nil {
		return err
	}
	w := c.expect(func(m chanmsg.Message) bool {
		r, ok := m.(*chanmsg.GPADLCreated)
		return ok && r.ChildRelID == relid && r.GPADL == id
	})
	if err := c.post(hdr); err != nil {
		c.cancel(w)
		return err
	}
	for _, b := range bodies {
		if err := c.post(b); err != nil {
			c.cancel(w)
			return err
		}
	}
	m, err := c.wait(w)
	if err != nil {
		return fmt.Errorf("GPADL %#x: %w", id, err)
	}
	if st := m.(*chanmsg.GPADLCreated).Status; st != chanmsg.StatusSuccess {
		return fmt.Errorf("%w: GPADL %#x status %#x", ErrRefused, id, st)
	}
	return nil
}

// teardown asks the host to forget a GPADL and waits for GPADL_TORNDOWN.
func (c *Client) teardown(relid, id uint32) error {
	w := c.expect(func(m chanmsg.Message) bool {
		r, ok := m.(*chanmsg.GPADLTorndown)
		return ok && r.GPADL == id
	})
	_, err := c.call(w, &chanmsg.GPADLTeardown{ChildRelID: relid, GPADL: id})
	return err
}

// hostSignal is HvSignalEvent on the channel's connection id.
type hostSignal struct {
	t      vmbus.GuestTransport
	connID uint32
}

func (h hostSignal) Signal() error { return h.t.SignalEvent(h.connID) }

// Endpoint is the guest side of the channel's rings.
func (ch *Channel) Endpoint() *ring.Endpoint { return ch.ep }

// Offer is the channel's offer.
func (ch *Channel) Offer() *Offer { return ch.offer }

// RingGPA is the guest physical address of the channel's ring pages: the
// guest-to-host ring first, then the host-to-guest ring.
func (ch *Channel) RingGPA() uint64 { return ch.gpa }

func (ch *Channel) rescind() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.rescinded = true
	if ch.bell != nil {
		ch.bell.Close() // wakes Send/Recv with ErrClosed
	}
}

// Close closes the channel: CLOSECHANNEL, then the GPADL teardown, then the
// ring pages go back to the allocator. For a rescinded channel it releases
// the relid instead.
func (ch *Channel) Close() error {
	var err error
	ch.closed.Do(func() {
		c := ch.c
		ch.mu.Lock()
		ch.bell.Close()
		rescinded := ch.rescinded
		ch.mu.Unlock()
		c.mu.Lock()
		ch.offer.open = nil
		c.mu.Unlock()
		if rescinded {
			err = c.post(&chanmsg.RelIDReleased{ChildRelID: ch.offer.ChildRelID})
		} else {
			err = errors.Join(
				c.post(&chanmsg.CloseChannel{ChildRelID: ch.offer.ChildRelID}),
				c.teardown(ch.offer.ChildRelID, ch.gpadl))
		}
		c.cfg.Pages.Free(ch.gpa, ch.pages)
	})
	return err
}
