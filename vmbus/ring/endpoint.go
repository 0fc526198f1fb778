package ring

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/partita-hv/partita/vmbus/packet"
)

// ErrClosed is returned by an Endpoint (and by Waiters) after Close.
var ErrClosed = errors.New("ring: closed")

// Signaler raises an interrupt at the peer of a channel: HvSignalEvent from
// a guest, a SynIC event flag plus interrupt from the host, an eventfd write
// across processes.
type Signaler interface {
	Signal() error
}

// Waiter blocks until the peer signals this side, or returns an error once
// it is closed. A channel has one interrupt for both directions, so one
// Waiter serves both "data arrived" and "space freed".
type Waiter interface {
	Wait() error
}

// Event is an in-process Signaler and Waiter: a level-triggered doorbell
// that coalesces signals until the next Wait.
type Event struct {
	ch   chan struct{}
	done chan struct{}
	once sync.Once
}

// NewEvent returns an unsignalled Event.
func NewEvent() *Event {
	return &Event{ch: make(chan struct{}, 1), done: make(chan struct{})}
}

// Signal wakes the waiter, or leaves the event set if none waits.
func (e *Event) Signal() error {
	select {
	case e.ch <- struct{}{}:
	default:
	}
	return nil
}

// Wait blocks until the event is signalled or closed.
func (e *Event) Wait() error {
	select {
	case <-e.ch:
		return nil
	case <-e.done:
		return ErrClosed
	}
}

// Close makes Wait return ErrClosed, now and later.
func (e *Event) Close() error {
	e.once.Do(func() { close(e.done) })
	return nil
}

// Stats counts an endpoint's traffic. Read it with Endpoint.Stats.
type Stats struct {
	PacketsSent     uint64 // packets published to the peer
	PacketsReceived uint64 // packets read and committed (given back to the peer)
	SignalsSent     uint64 // interrupts raised at the peer
	Wakeups         uint64 // interrupts received from the peer
	SendBlocked     uint64 // sends that found the ring full and waited
}

// Endpoint is one side of a channel: a Reader on the inbound ring, a Writer
// on the outbound ring, the doorbell to the peer and the wait for the
// peer's doorbell. It applies the signalling rules: it signals the peer only
// when the ring rules say so, keeps its inbound ring masked while it is
// draining, commits reads in batches, and before sleeping spins for a short
// while so that a busy channel runs without interrupts.
//
// Send, Queue and Publish may be called from one goroutine and Recv and Next
// from another at the same time; neither side is safe for concurrent use
// with itself.
type Endpoint struct {
	in   *Reader
	out  *Writer
	peer Signaler
	wait Waiter

	// Spin is how long Recv and Send poll before they sleep on the peer's
	// doorbell. Zero means sleep at once.
	spin time.Duration
	// commitEvery bounds the bytes read before the read index is published;
	// publishEvery, the bytes queued before the write index is.
	commitEvery, publishEvery int
	// masked mirrors the inbound ring's interrupt_mask; owned by Recv.
	masked bool

	data  chan struct{} // wakes Recv
	space chan struct{} // wakes Send
	done  chan struct{} // closed when the wait loop ends
	err   error         // why the wait loop ended; written before done closes

	// Packet counts are kept in plain fields by the side that owns them and
	// copied to the atomics when it publishes or commits: a locked add per
	// packet would be a full barrier per packet, the cost batching avoids.
	nsent, nreceived          uint64
	sent, received            atomic.Uint64
	signals, wakeups, blocked atomic.Uint64
}

// EndpointConfig tunes an Endpoint.
type EndpointConfig struct {
	// Spin before sleeping; see Endpoint.
	Spin time.Duration
}

// NewEndpoint joins the rings and doorbells of one side of a channel and
// starts the goroutine that waits for the peer's interrupts.
func NewEndpoint(in *Reader, out *Writer, peer Signaler, wait Waiter, cfg EndpointConfig) *Endpoint {
	e := &Endpoint{
		in: in, out: out, peer: peer, wait: wait,
		spin:         cfg.Spin,
		commitEvery:  in.DataSize() / 4,
		publishEvery: out.DataSize() / 4,
		data:         make(chan struct{}, 1),
		space:        make(chan struct{}, 1),
		done:         make(chan struct{}),
	}
	in.SetInterruptMask(false)
	go e.waitLoop()
	return e
}

// waitLoop turns the peer's doorbell into wake-ups for Recv and Send.
func (e *Endpoint) waitLoop() {
	for {
		if err := e.wait.Wait(); err != nil {
			e.err = err
			close(e.done)
			return
		}
		e.wakeups.Add(1)
		kick(e.data)
		kick(e.space)
	}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Stats returns the endpoint's counters.
func (e *Endpoint) Stats() Stats {
	return Stats{
		PacketsSent:     e.sent.Load(),
		PacketsReceived: e.received.Load(),
		SignalsSent:     e.signals.Load(),
		Wakeups:         e.wakeups.Load(),
		SendBlocked:     e.blocked.Load(),
	}
}

func (e *Endpoint) signal() error {
	e.signals.Add(1)
	return e.peer.Signal()
}

// closedErr reports the wait loop's end as ErrClosed.
func (e *Endpoint) closedErr() error {
	if errors.Is(e.err, ErrClosed) || e.err == nil {
		return ErrClosed
	}
	return errors.Join(ErrClosed, e.err)
}

// Send writes one packet and publishes it, with any packets queued before
// it, waiting for space while the ring is full.
func (e *Endpoint) Send(t packet.Type, flags uint16, transID uint64, ext, payload []byte) error {
	if err := e.Queue(t, flags, transID, ext, payload); err != nil {
		return err
	}
	return e.Publish()
}

// Queue writes one packet without publishing it (see Writer.Append): the
// peer sees it after the next Publish or Send. A sender with a burst of
// packets queues them and publishes once, which saves a full barrier and a
// look at the peer's interrupt mask per packet. Queue publishes by itself
// when the queued bytes reach a quarter of the ring, so that a long burst
// keeps the reader busy, and before it waits for space in a full ring.
func (e *Endpoint) Queue(t packet.Type, flags uint16, transID uint64, ext, payload []byte) error {
	armed := false
	for {
		err := e.out.Append(t, flags, transID, ext, payload)
		if err == nil {
			if armed {
				e.out.SetPendingSend(0)
			}
			e.nsent++
			if e.out.Unpublished() >= e.publishEvery {
				return e.Publish()
			}
			return nil
		}
		if !errors.Is(err, ErrFull) {
			return err
		}
		// The reader cannot free space for packets it has not been shown.
		if err := e.Publish(); err != nil {
			return err
		}
		if !armed {
			// Ask the reader to signal when enough is free, then retry once
			// before sleeping in case it freed space in between.
			e.out.SetPendingSend(Need(len(ext), len(payload)))
			armed = true
			e.blocked.Add(1)
			continue
		}
		if e.poll(func() bool { return e.out.fits(len(ext), len(payload)) }) {
			continue
		}
		select {
		case <-e.space:
		case <-e.done:
			return e.closedErr()
		}
	}
}

// Publish makes the queued packets visible to the peer and signals it if
// the ring rules say so.
func (e *Endpoint) Publish() error {
	if e.out.Unpublished() == 0 {
		return nil
	}
	sig := e.out.Publish()
	e.sent.Store(e.nsent)
	if sig {
		return e.signal()
	}
	return nil
}

// fits reports whether a packet with these sizes would fit now.
func (w *Writer) fits(extLen, payloadLen int) bool {
	rd := load(w.r.hdr, offReadIndex)
	return w.r.checkIndex("read_index", rd) != nil || w.free(rd) > Need(extLen, payloadLen)
}

// Recv reads the next packet into p (see Reader.Read), waiting while the
// ring is empty.
func (e *Endpoint) Recv(p []byte) (int, error) {
	var n int
	err := e.recv(false, func() (err error) {
		n, err = e.in.Read(p)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Next is Recv without the copy: it returns the next packet, of at most max
// bytes, where it lies in the ring (see Reader.Next, whose warning about a
// writer that changes the bytes applies). The slice stays valid until the
// next call to Recv, Next or Flush on this endpoint, which may give its
// bytes back to the writer.
func (e *Endpoint) Next(max int) ([]byte, error) {
	var b []byte
	err := e.recv(true, func() (err error) {
		b, err = e.in.Next(max)
		return err
	})
	return b, err
}

// recv runs read until it yields a packet, committing batches and waiting
// for the peer while the ring is empty. inPlace callers still hold the
// previous packet when they call again, so their batch is committed before
// the next read rather than after it.
func (e *Endpoint) recv(inPlace bool, read func() error) error {
	if inPlace && e.in.Pending() >= e.commitEvery {
		if err := e.commit(); err != nil {
			return err
		}
	}
	for {
		err := read()
		if err == nil {
			e.nreceived++
			if !e.masked {
				// Draining: the writer need not interrupt us.
				e.in.SetInterruptMask(true)
				e.masked = true
			}
			if !inPlace && e.in.Pending() >= e.commitEvery {
				return e.commit()
			}
			return nil
		}
		if !errors.Is(err, ErrEmpty) {
			return err
		}
		// Drained: publish the batch so a blocked writer can go on.
		if err := e.commit(); err != nil {
			return err
		}
		if e.poll(e.hasData) {
			continue
		}
		// Unmask, then re-check: a packet written before the unmask was
		// not signalled.
		e.in.SetInterruptMask(false)
		e.masked = false
		if e.hasData() {
			continue
		}
		select {
		case <-e.data:
		case <-e.done:
			return e.closedErr()
		}
	}
}

// PublishIdle publishes the queued packets if no inbound packet is
// waiting. A device that queues its answers while it drains calls it before
// each Next or Recv, so that its answers go out once its input runs dry. It
// looks at the shared ring only when something is queued.
func (e *Endpoint) PublishIdle() error {
	if e.out.Unpublished() == 0 || e.hasData() {
		return nil
	}
	return e.Publish()
}

func (e *Endpoint) hasData() bool {
	ok, err := e.in.Available()
	return ok || err != nil // let Read report the corruption
}

// poll spins for up to the configured time until cond holds.
func (e *Endpoint) poll(cond func() bool) bool {
	if e.spin <= 0 {
		return false
	}
	deadline := time.Now().Add(e.spin)
	for i := 0; ; i++ {
		if cond() {
			return true
		}
		if i%64 == 63 && time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
}

func (e *Endpoint) commit() error {
	if e.in.Pending() == 0 {
		return nil
	}
	sig := e.in.Commit()
	e.received.Store(e.nreceived)
	if sig {
		return e.signal()
	}
	return nil
}

// Flush publishes reads that Recv has not committed yet.
func (e *Endpoint) Flush() error { return e.commit() }

// Done is closed when the endpoint's doorbell is closed.
func (e *Endpoint) Done() <-chan struct{} { return e.done }

// Notify signals the peer regardless of the ring rules (for example to make
// it look at a ring after a reset).
func (e *Endpoint) Notify() error { return e.signal() }

// Drained reports whether the peer has consumed everything this side sent.
func (e *Endpoint) Drained() bool { return e.out.drained() }

// String describes both rings' shared header words, for diagnostics. It
// only reads shared memory atomically, so it is safe at any time.
func (e *Endpoint) String() string {
	return fmt.Sprintf("in{%v} out{%v}", headerString(e.in.r.hdr), headerString(e.out.r.hdr))
}

func headerString(hdr []byte) string {
	return fmt.Sprintf("write=%#x read=%#x mask=%d pending=%#x features=%#x",
		load(hdr, offWriteIndex), load(hdr, offReadIndex), load(hdr, offInterruptMask),
		load(hdr, offPendingSend), load(hdr, offFeatureBits))
}
