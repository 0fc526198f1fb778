// Package host is the VMBus channel server that a root partition runs for
// each child partition: it answers the guest's version negotiation, offers
// devices as channels, maps the GPADLs the guest establishes, opens and
// closes channels (wiring their rings to a Device), tears GPADLs down and
// rescinds channels. It is a state machine over a vmbus.HostTransport and
// knows nothing of KVM.
//
// All protocol state is owned by one loop goroutine: guest messages,
// requests from the root (Offer, Rescind) and failures reported by devices
// are all handled there in order, so no lock guards it. Devices run on
// their own goroutines and reach the loop only through Channel.Fail.
//
// The guest is hostile. A message that does not decode, arrives in the
// wrong state, or names a channel or GPADL it does not own is counted as a
// protocol error and dropped (with a failure reply where the protocol has
// one). Where the fault belongs to a channel — a GPADL page outside guest
// memory, a ring that does not parse, a device that finds its ring corrupt
// — that channel alone is closed and rescinded; the server and the other
// channels go on.
package host

import (
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus"
	"github.com/partita-hv/partita/vmbus/chanmsg"
	"github.com/partita-hv/partita/vmbus/ring"
)

// Limits on what one guest can make the server hold.
const (
	// MaxChannels bounds offers; relids are 1..2047 (bit 0 of the event
	// flags is reserved).
	MaxChannels = 2047
	// MaxGPADLs bounds GPADLs (created or being assembled) per partition.
	MaxGPADLs = 1024
	// MaxGPADLPages bounds the pages of all GPADLs of a partition (4 GiB).
	MaxGPADLPages = 1 << 20
)

// Errors reported through Stats and logs; returned by Offer and Rescind.
var (
	ErrProtocol = errors.New("vmbus host: protocol violation")
	ErrClosed   = errors.New("vmbus host: server closed")
	ErrNoRelID  = errors.New("vmbus host: no free relid")
)

// Device is a synthetic device behind a channel.
type Device interface {
	// Open starts serving ch, whose rings are now mapped. It must not block;
	// a device typically starts a goroutine around ch.Endpoint(). An error
	// fails the open (the guest sees a non-zero status).
	Open(ch *Channel) error
	// Close stops serving ch and returns once the device no longer touches
	// its rings or its GPADLs. The endpoint is already closed when Close is
	// called, so blocked Send and Recv calls have returned ErrClosed.
	Close(ch *Channel)
}

// OfferSpec describes a channel to offer.
type OfferSpec struct {
	InterfaceType     chanmsg.GUID
	InterfaceInstance chanmsg.GUID
	Flags             uint16
	MMIOMegabytes     uint16
	UserDefined       [120]byte
	SubChannelIndex   uint16
}

// Config tunes a Server.
type Config struct {
	Logger hclog.Logger
	// Endpoint configures each open channel's ring endpoint.
	Endpoint ring.EndpointConfig
}

// DefaultPoll is how long the root's devices poll a channel that has gone
// quiet before they sleep on its doorbell (ring.EndpointConfig.Spin). A
// guest that keeps writing then finds a device still reading, rather than
// one it must wake and wait for with a full ring: streaming 1 KiB packets
// over 64 KiB rings from a Generation 2 partition, it cut the guest's exits
// per packet from 0.064 to 0.025 (BENCHMARKS.md). The cost is at most this
// long of a host core each time a channel goes quiet. QEMU's iothreads
// poll for up to 32 µs by default; 32 µs gave 0.041 here.
const DefaultPoll = 50 * time.Microsecond

// Stats counts what the server has seen. Fault counters never decrease.
type Stats struct {
	Messages        uint64 // guest messages received
	ProtocolErrors  uint64 // messages dropped as malformed or out of order
	ChannelFailures uint64 // channels closed because of a fault
	GPADLsCreated   uint64
	ChannelsOpened  uint64

	// Ring traffic of every channel since the server started, open or
	// closed: packets the devices read and wrote, interrupts they raised
	// at the guest, and wake-ups by the guest's doorbells (several
	// doorbells can make one wake-up).
	PacketsFromGuest  uint64
	PacketsToGuest    uint64
	InterruptsToGuest uint64
	GuestWakeups      uint64
}

type chState int

const (
	stateOffered chState = iota
	stateOpen
	stateRescinded // waiting for RELID_RELEASED
)

func (s chState) String() string {
	return [...]string{"offered", "open", "rescinded"}[s]
}

// Server is the channel server for one partition.
type Server struct {
	t   vmbus.HostTransport
	mem *guestmem.Memory
	log hclog.Logger
	cfg Config

	reqs chan func()   // work for the loop
	done chan struct{} // closed when the loop exits
	err  error         // why the loop exited; written before done closes

	messages, protocolErrors, channelFailures, gpadlsCreated, channelsOpened atomic.Uint64

	// Owned by the loop goroutine.
	connected  bool
	version    chanmsg.Version
	targetVP   uint32 // VP for control messages
	offersSent bool   // REQUESTOFFERS answered: new offers go out at once
	channels   map[uint32]*Channel
	gpadls     map[uint32]*gpadl
	gpadlPages uint64
	closed     ring.Stats // ring traffic of the channels that have closed
}

// gpadl is a guest page list, complete or being assembled.
type gpadl struct {
	id    uint32
	relid uint32
	asm   *chanmsg.GPADLAssembler
	pfns  []uint64 // set when complete and validated
	pages uint64
}

// NewServer starts a channel server over t.
func NewServer(t vmbus.HostTransport, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	s := &Server{
		t: t, mem: t.Memory(), cfg: cfg,
		log:      cfg.Logger.Named("vmbus"),
		reqs:     make(chan func()),
		done:     make(chan struct{}),
		channels: make(map[uint32]*Channel),
		gpadls:   make(map[uint32]*gpadl),
	}
	msgs := make(chan inbound)
	go s.readLoop(msgs)
	go s.loop(msgs)
	return s
}

type inbound struct {
	connID  uint32
	payload []byte
	err     error
}

// readLoop feeds guest messages to the loop until the transport closes.
func (s *Server) readLoop(msgs chan<- inbound) {
	for {
		connID, payload, err := s.t.RecvMessage()
		select {
		case msgs <- inbound{connID, payload, err}:
		case <-s.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (s *Server) loop(msgs <-chan inbound) {
	defer close(s.done)
	for {
		select {
		case m := <-msgs:
			if m.err != nil {
				s.shutdown()
				s.err = m.err
				return
			}
			s.handle(m.connID, m.payload)
		case f := <-s.reqs:
			if f == nil {
				s.shutdown()
				s.err = ErrClosed
				return
			}
			f()
		}
	}
}

// do runs f on the loop and waits for it.
func (s *Server) do(f func()) error {
	ran := make(chan struct{})
	select {
	case s.reqs <- func() { f(); close(ran) }:
	case <-s.done:
		return ErrClosed
	}
	<-ran
	return nil
}

// Close closes every open channel and stops the server. The transport is
// left to its owner.
func (s *Server) Close() error {
	select {
	case s.reqs <- nil:
	case <-s.done:
	}
	<-s.done
	return nil
}

// Done is closed when the server has stopped; Err says why.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is the reason the server stopped (ErrClosed after Close, or the
// transport's error).
func (s *Server) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Stats returns the server's counters. The traffic of open channels is
// read on the server's goroutine, so Stats must not be called from a
// Device's Open or Close, or from a goroutine they wait for; after Close,
// Stats has the traffic of the channels Close closed.
func (s *Server) Stats() Stats {
	var t ring.Stats
	if s.do(func() {
		t = s.closed
		for _, ch := range s.channels {
			if ch.ep != nil {
				addTraffic(&t, ch.ep.Stats())
			}
		}
	}) != nil {
		t = s.closed // the loop has ended (done is closed after it): no race
	}
	return Stats{
		Messages:          s.messages.Load(),
		ProtocolErrors:    s.protocolErrors.Load(),
		ChannelFailures:   s.channelFailures.Load(),
		GPADLsCreated:     s.gpadlsCreated.Load(),
		ChannelsOpened:    s.channelsOpened.Load(),
		PacketsFromGuest:  t.PacketsReceived,
		PacketsToGuest:    t.PacketsSent,
		InterruptsToGuest: t.SignalsSent,
		GuestWakeups:      t.Wakeups,
	}
}

func addTraffic(sum *ring.Stats, st ring.Stats) {
	sum.PacketsReceived += st.PacketsReceived
	sum.PacketsSent += st.PacketsSent
	sum.SignalsSent += st.SignalsSent
	sum.Wakeups += st.Wakeups
}

// Version is the negotiated protocol version (0 when not connected).
func (s *Server) Version() chanmsg.Version {
	var v chanmsg.Version
	s.do(func() {
		if s.connected {
			v = s.version
		}
	})
	return v
}

// Offer adds a device as a new channel. If the guest has already asked for
// offers it receives this one at once.
func (s *Server) Offer(spec OfferSpec, dev Device) (*Channel, error) {
	var ch *Channel
	var err error
	if e := s.do(func() { ch, err = s.offerLocked(spec, dev) }); e != nil {
		return nil, e
	}
	return ch, err
}

func (s *Server) offerLocked(spec OfferSpec, dev Device) (*Channel, error) {
	relid := uint32(0)
	for id := uint32(1); id <= MaxChannels; id++ {
		if _, used := s.channels[id]; !used {
			relid = id
			break
		}
	}
	if relid == 0 {
		return nil, ErrNoRelID
	}
	ch := &Channel{
		srv:   s,
		relid: relid,
		dev:   dev,
		log:   s.log.With("relid", relid, "type", spec.InterfaceType.String()),
		offer: chanmsg.OfferChannel{
			InterfaceType:        spec.InterfaceType,
			InterfaceInstance:    spec.InterfaceInstance,
			Flags:                spec.Flags,
			MMIOMegabytes:        spec.MMIOMegabytes,
			UserDefined:          spec.UserDefined,
			SubChannelIndex:      spec.SubChannelIndex,
			ChildRelID:           relid,
			IsDedicatedInterrupt: true,
			// Signalling through the monitor page is not offered.
			MonitorAllocated: false,
			ConnectionID:     ConnectionID(relid),
		},
	}
	s.channels[relid] = ch
	if s.connected && s.offersSent {
		s.post(&ch.offer)
	}
	return ch, nil
}

// ConnectionID is the HvSignalEvent connection id of channel relid:
// relid | SINT << 12, as Hyper-V assigns them (relid 5 -> 0x2005).
func ConnectionID(relid uint32) uint32 { return relid | chanmsg.VMBusMessageSINT<<12 }

// Rescind withdraws a channel (device hot-remove): it is closed if open and
// the guest is told; its relid is reused once the guest releases it.
func (s *Server) Rescind(ch *Channel) error {
	return s.do(func() { s.rescindLocked(ch) })
}

func (s *Server) rescindLocked(ch *Channel) {
	if s.channels[ch.relid] != ch || ch.state == stateRescinded {
		return
	}
	s.closeChannelLocked(ch)
	if !s.connected || !s.offersSent {
		// The guest never saw it.
		s.dropChannelLocked(ch)
		return
	}
	ch.state = stateRescinded
	s.post(&chanmsg.RescindChannelOffer{ChildRelID: ch.relid})
}

// post sends a message to the guest's control VP.
func (s *Server) post(m chanmsg.Message) {
	if err := s.t.PostMessage(s.targetVP, m.AppendTo(nil)); err != nil {
		s.log.Warn("post message failed", "type", m.Type(), "error", err)
	}
}

// protocolError counts and logs a message the guest should not have sent.
func (s *Server) protocolError(format string, args ...any) {
	s.protocolErrors.Add(1)
	s.log.Warn("guest protocol error", "error", fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...))
}

// handle processes one guest message.
func (s *Server) handle(connID uint32, payload []byte) {
	s.messages.Add(1)
	msg, err := chanmsg.Decode(payload)
	if err != nil {
		s.protocolError("connection %d: %v", connID, err)
		return
	}
	if ic, ok := msg.(*chanmsg.InitiateContact); ok {
		s.initiateContact(connID, ic)
		return
	}
	if !s.connected {
		s.protocolError("%v before INITIATE_CONTACT", msg.Type())
		return
	}
	if connID != chanmsg.MessageConnectionID {
		s.protocolError("%v on connection id %d", msg.Type(), connID)
		return
	}
	switch m := msg.(type) {
	case *chanmsg.RequestOffers:
		s.requestOffers()
	case *chanmsg.GPADLHeader:
		s.gpadlHeader(m)
	case *chanmsg.GPADLBody:
		s.gpadlBody(m)
	case *chanmsg.OpenChannel:
		s.openChannel(m)
	case *chanmsg.CloseChannel:
		s.closeChannelMsg(m)
	case *chanmsg.GPADLTeardown:
		s.gpadlTeardown(m)
	case *chanmsg.RelIDReleased:
		s.relidReleased(m)
	case *chanmsg.ModifyChannel:
		s.modifyChannel(m)
	case *chanmsg.Unload:
		s.unload()
		s.post(&chanmsg.UnloadResponse{})
	default:
		s.protocolError("unexpected %v from guest", msg.Type())
	}
}

func (s *Server) initiateContact(connID uint32, m *chanmsg.InitiateContact) {
	v := chanmsg.Version(m.VersionRequested)
	// Versions >= 5.0 are requested on connection id 4, older ones on 1.
	wantConn := uint32(chanmsg.MessageConnectionID)
	if v >= chanmsg.Version5_0 {
		wantConn = chanmsg.MessageConnectionID4
	}
	reply := &chanmsg.VersionResponse{}
	switch {
	case s.connected:
		s.protocolError("INITIATE_CONTACT while connected (version %v)", s.version)
	case connID != wantConn:
		s.protocolError("INITIATE_CONTACT for %v on connection id %d", v, connID)
	case !v.Supported():
		s.log.Debug("refusing version", "version", v)
	case m.TargetVCPU >= s.t.VPCount():
		s.protocolError("INITIATE_CONTACT target vcpu %d of %d", m.TargetVCPU, s.t.VPCount())
	case v >= chanmsg.Version5_0 && m.MsgSINT() != chanmsg.VMBusMessageSINT:
		s.protocolError("INITIATE_CONTACT message sint %d", m.MsgSINT())
	default:
		s.connected, s.version = true, v
		s.targetVP = 0
		if v >= chanmsg.Version3_0 {
			s.targetVP = m.TargetVCPU
		}
		reply.VersionSupported = true
		reply.MsgConnID = chanmsg.MessageConnectionID
		s.log.Info("guest connected", "version", v, "target_vp", s.targetVP)
	}
	// The reply goes to the VP the guest named when it is valid.
	vp := s.targetVP
	if !s.connected && m.TargetVCPU < s.t.VPCount() {
		vp = m.TargetVCPU
	}
	if err := s.t.PostMessage(vp, reply.AppendTo(nil)); err != nil {
		s.log.Warn("post version response failed", "error", err)
	}
}

func (s *Server) requestOffers() {
	ids := make([]uint32, 0, len(s.channels))
	for id, ch := range s.channels {
		if ch.state != stateRescinded {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		s.post(&s.channels[id].offer)
	}
	s.post(&chanmsg.AllOffersDelivered{})
	s.offersSent = true
}

// channelFor finds a live channel for a message from the guest.
func (s *Server) channelFor(relid uint32, what chanmsg.Type) *Channel {
	ch := s.channels[relid]
	if ch == nil || ch.state == stateRescinded {
		s.protocolError("%v for unknown channel %d", what, relid)
		return nil
	}
	return ch
}

func (s *Server) gpadlHeader(m *chanmsg.GPADLHeader) {
	fail := func(format string, args ...any) {
		s.protocolError(format, args...)
		s.post(&chanmsg.GPADLCreated{ChildRelID: m.ChildRelID, GPADL: m.GPADL, Status: chanmsg.StatusUnsuccessful})
	}
	ch := s.channelFor(m.ChildRelID, m.Type())
	if ch == nil {
		s.post(&chanmsg.GPADLCreated{ChildRelID: m.ChildRelID, GPADL: m.GPADL, Status: chanmsg.StatusUnsuccessful})
		return
	}
	if _, dup := s.gpadls[m.GPADL]; dup {
		fail("GPADL %#x already exists", m.GPADL)
		return
	}
	if len(s.gpadls) >= MaxGPADLs {
		fail("GPADL %#x: partition already has %d", m.GPADL, len(s.gpadls))
		return
	}
	asm, err := chanmsg.NewGPADLAssembler(m)
	if err != nil {
		s.failChannelLocked(ch, fmt.Errorf("GPADL %#x: %w", m.GPADL, err))
		s.post(&chanmsg.GPADLCreated{ChildRelID: m.ChildRelID, GPADL: m.GPADL, Status: chanmsg.StatusUnsuccessful})
		return
	}
	g := &gpadl{id: m.GPADL, relid: m.ChildRelID, asm: asm}
	s.gpadls[g.id] = g
	if asm.Done() {
		s.finishGPADL(g)
	}
}

func (s *Server) gpadlBody(m *chanmsg.GPADLBody) {
	g := s.gpadls[m.GPADL]
	if g == nil || g.pfns != nil {
		s.protocolError("GPADL_BODY for %#x, which is not being built", m.GPADL)
		return
	}
	done, err := g.asm.Add(m)
	if err != nil {
		s.rejectGPADL(g, err)
		return
	}
	if done {
		s.finishGPADL(g)
	}
}

// finishGPADL validates a complete page list against guest memory and the
// partition's budget, then reports it created.
func (s *Server) finishGPADL(g *gpadl) {
	var pfns []uint64
	for _, r := range g.asm.Ranges() {
		pfns = append(pfns, r.PFNs...)
	}
	for _, pfn := range pfns {
		if err := s.mem.CheckPFN(pfn); err != nil {
			s.rejectGPADL(g, err)
			return
		}
	}
	pages := uint64(len(pfns))
	if s.gpadlPages+pages > MaxGPADLPages {
		s.rejectGPADL(g, fmt.Errorf("%d pages would exceed the partition's %d", pages, MaxGPADLPages))
		return
	}
	g.pfns, g.pages, g.asm = pfns, pages, nil
	s.gpadlPages += pages
	s.gpadlsCreated.Add(1)
	s.post(&chanmsg.GPADLCreated{ChildRelID: g.relid, GPADL: g.id, Status: chanmsg.StatusSuccess})
}

// rejectGPADL drops a GPADL the guest built wrongly, fails it, and closes
// its channel.
func (s *Server) rejectGPADL(g *gpadl, err error) {
	delete(s.gpadls, g.id)
	s.post(&chanmsg.GPADLCreated{ChildRelID: g.relid, GPADL: g.id, Status: chanmsg.StatusUnsuccessful})
	if ch := s.channels[g.relid]; ch != nil {
		s.failChannelLocked(ch, fmt.Errorf("GPADL %#x: %w", g.id, err))
	}
}

func (s *Server) openChannel(m *chanmsg.OpenChannel) {
	ch := s.channelFor(m.ChildRelID, m.Type())
	if ch == nil {
		return
	}
	reply := func(status uint32) {
		s.post(&chanmsg.OpenChannelResult{ChildRelID: m.ChildRelID, OpenID: m.OpenID, Status: status})
	}
	if ch.state != stateOffered {
		s.protocolError("OPENCHANNEL for channel %d in state %v", ch.relid, ch.state)
		reply(chanmsg.StatusUnsuccessful)
		return
	}
	g := s.gpadls[m.RingBufferGPADL]
	if g == nil || g.pfns == nil || g.relid != ch.relid {
		s.protocolError("OPENCHANNEL %d with GPADL %#x it does not own", ch.relid, m.RingBufferGPADL)
		reply(chanmsg.StatusUnsuccessful)
		return
	}
	if err := s.openLocked(ch, g, m); err != nil {
		reply(chanmsg.StatusUnsuccessful)
		s.failChannelLocked(ch, err)
		return
	}
	reply(chanmsg.StatusSuccess)
}

// openLocked maps the ring GPADL, builds the endpoint and starts the device.
func (s *Server) openLocked(ch *Channel, g *gpadl, m *chanmsg.OpenChannel) error {
	total := uint32(len(g.pfns))
	split := m.DownstreamRingBufferPageOffset
	if split < 2 || split > total || total-split < 2 {
		return fmt.Errorf("%w: ring split at page %d of %d (each ring needs 2 pages)", ErrProtocol, split, total)
	}
	if m.TargetVP >= s.t.VPCount() {
		return fmt.Errorf("%w: target vp %d of %d", ErrProtocol, m.TargetVP, s.t.VPCount())
	}
	win, err := s.mem.MapPages(g.pfns)
	if err != nil {
		return fmt.Errorf("map ring GPADL: %w", err)
	}
	b := win.Bytes()
	in, err := ring.NewReader(b[:split*ring.PageSize])
	if err != nil {
		win.Close()
		return fmt.Errorf("guest-to-host ring: %w", err)
	}
	out, err := ring.NewWriter(b[split*ring.PageSize:])
	if err != nil {
		win.Close()
		return fmt.Errorf("host-to-guest ring: %w", err)
	}
	bell, err := s.t.RegisterDoorbell(ch.offer.ConnectionID)
	if err != nil {
		win.Close()
		return fmt.Errorf("register doorbell: %w", err)
	}
	ch.targetVP.Store(m.TargetVP)
	ch.ep = ring.NewEndpoint(in, out, guestSignal{ch}, bell, s.cfg.Endpoint)
	ch.win, ch.bell, ch.ringGPADL = win, bell, g.id
	ch.state = stateOpen
	if err := ch.dev.Open(ch); err != nil {
		bell.Close()
		win.Close()
		ch.ep, ch.win, ch.bell = nil, nil, nil
		ch.state = stateOffered
		return fmt.Errorf("device open: %w", err)
	}
	s.channelsOpened.Add(1)
	ch.log.Debug("channel open", "ring_pages", total, "split", split)
	return nil
}

// guestSignal raises the channel's event flag at its target VP.
type guestSignal struct{ ch *Channel }

func (g guestSignal) Signal() error {
	return g.ch.srv.t.SignalGuest(g.ch.targetVP.Load(), g.ch.relid)
}

func (s *Server) closeChannelMsg(m *chanmsg.CloseChannel) {
	ch := s.channelFor(m.ChildRelID, m.Type())
	if ch == nil {
		return
	}
	if ch.state != stateOpen {
		s.protocolError("CLOSECHANNEL for channel %d in state %v", ch.relid, ch.state)
		return
	}
	s.closeChannelLocked(ch)
}

// closeChannelLocked stops the device and unmaps the rings. The channel
// stays offered.
func (s *Server) closeChannelLocked(ch *Channel) {
	if ch.state != stateOpen {
		return
	}
	ch.bell.Close() // ends the endpoint: blocked Send/Recv return ErrClosed
	ch.dev.Close(ch)
	// The device has left the rings: its endpoint's counts are final.
	addTraffic(&s.closed, ch.ep.Stats())
	ch.win.Close()
	ch.ep, ch.win, ch.bell = nil, nil, nil
	ch.state = stateOffered
}

// failChannelLocked closes and rescinds a channel after a fault.
func (s *Server) failChannelLocked(ch *Channel, err error) {
	if s.channels[ch.relid] != ch || ch.state == stateRescinded {
		return
	}
	s.channelFailures.Add(1)
	ch.log.Warn("channel failed; closing it", "error", err)
	s.rescindLocked(ch)
}

func (s *Server) gpadlTeardown(m *chanmsg.GPADLTeardown) {
	g := s.gpadls[m.GPADL]
	if g == nil || g.relid != m.ChildRelID || g.pfns == nil {
		s.protocolError("GPADL_TEARDOWN of %#x for channel %d, which it does not own", m.GPADL, m.ChildRelID)
		return
	}
	if ch := s.channels[g.relid]; ch != nil && ch.state == stateOpen && ch.ringGPADL == g.id {
		s.protocolError("GPADL_TEARDOWN of %#x while channel %d uses it", g.id, g.relid)
		return
	}
	s.freeGPADL(g)
	s.post(&chanmsg.GPADLTorndown{GPADL: g.id})
}

func (s *Server) freeGPADL(g *gpadl) {
	delete(s.gpadls, g.id)
	s.gpadlPages -= g.pages
}

func (s *Server) relidReleased(m *chanmsg.RelIDReleased) {
	ch := s.channels[m.ChildRelID]
	if ch == nil || ch.state != stateRescinded {
		s.protocolError("RELID_RELEASED for channel %d, which was not rescinded", m.ChildRelID)
		return
	}
	s.dropChannelLocked(ch)
}

// dropChannelLocked forgets a channel and its GPADLs; its relid is free.
func (s *Server) dropChannelLocked(ch *Channel) {
	for _, g := range s.gpadls {
		if g.relid == ch.relid {
			s.freeGPADL(g)
		}
	}
	delete(s.channels, ch.relid)
}

func (s *Server) modifyChannel(m *chanmsg.ModifyChannel) {
	ch := s.channelFor(m.ChildRelID, m.Type())
	if ch == nil {
		return
	}
	status := chanmsg.StatusSuccess
	if ch.state != stateOpen || m.TargetVP >= s.t.VPCount() {
		s.protocolError("MODIFYCHANNEL %d to vp %d in state %v", ch.relid, m.TargetVP, ch.state)
		status = chanmsg.StatusUnsuccessful
	} else {
		ch.targetVP.Store(m.TargetVP)
	}
	// Hosts acknowledge from 5.3 on; older guests do not wait for it.
	if s.version >= chanmsg.Version5_3 {
		s.post(&chanmsg.ModifyChannelResponse{ChildRelID: ch.relid, Status: status})
	}
}

// unload returns to the disconnected state: every channel closed, every
// GPADL freed, rescinded channels forgotten.
func (s *Server) unload() {
	for _, ch := range s.channels {
		s.closeChannelLocked(ch)
		if ch.state == stateRescinded {
			delete(s.channels, ch.relid)
		}
	}
	clear(s.gpadls)
	s.gpadlPages = 0
	s.connected, s.offersSent, s.version, s.targetVP = false, false, 0, 0
}

func (s *Server) shutdown() {
	for _, ch := range s.channels {
		s.closeChannelLocked(ch)
	}
}

// Channel is one offered channel as a device sees it.
type Channel struct {
	srv   *Server
	relid uint32
	dev   Device
	log   hclog.Logger
	offer chanmsg.OfferChannel

	targetVP atomic.Uint32 // VP for this channel's interrupts; MODIFYCHANNEL changes it

	// Owned by the server loop; ep, win and bell are valid while open. A
	// device reads ep only between its Open and the return of its Close.
	state     chState
	ep        *ring.Endpoint
	win       *guestmem.Window
	bell      vmbus.Doorbell
	ringGPADL uint32
}

// RelID is the channel's relative id.
func (c *Channel) RelID() uint32 { return c.relid }

// Offer is the offer message the guest sees.
func (c *Channel) Offer() chanmsg.OfferChannel { return c.offer }

// Endpoint is the host side of the channel's rings. Valid from Device.Open
// until Device.Close returns.
func (c *Channel) Endpoint() *ring.Endpoint { return c.ep }

// Memory is the partition's guest memory, for GPA-direct data.
func (c *Channel) Memory() *guestmem.Memory { return c.srv.mem }

// Logger is the channel's logger.
func (c *Channel) Logger() hclog.Logger { return c.log }

// Fail reports a fault the device found (a corrupt ring, a malformed
// packet): the server closes and rescinds the channel. It does not block, so
// a device may call it from the goroutine that Close waits for.
func (c *Channel) Fail(err error) {
	ep := c.ep
	go c.srv.do(func() {
		if c.ep == ep && c.state == stateOpen {
			c.srv.failChannelLocked(c, err)
		}
	})
}
