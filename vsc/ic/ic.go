// Package ic is the guest side of the integration services: it opens an
// IC channel, answers the host's version negotiation with the newest
// versions both sides know (as Linux does), and answers every later
// request through a handler, in place, with the same transaction id and
// length.
package ic

import (
	"errors"
	"fmt"

	"github.com/partita-hv/partita/vmbus/chanmsg"
	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/ic"
	"github.com/partita-hv/partita/vmbus/packet"
	"github.com/partita-hv/partita/vmbus/ring"
)

// Handler answers one request.
type Handler func(m ic.Message) Answer

// Answer is a handler's answer: a status, the answer's body (nil leaves
// the request's body as it is), and what to do once the answer is sent
// (a shutdown, say), if anything.
type Answer struct {
	Status uint32
	Body   []byte
	Then   func()
}

// Channel is an open IC channel.
type Channel struct {
	ch   *client.Channel
	done chan error
}

// Serve opens the offer of interface type typ and answers its requests
// with h, offering the service versions versions (newest first).
func Serve(c *client.Client, typ chanmsg.GUID, versions []ic.Version, h Handler) (*Channel, error) {
	o, err := c.Find(typ)
	if err != nil {
		return nil, err
	}
	ch, err := c.Open(o, client.RingConfig{SendPages: 4, RecvPages: 4})
	if err != nil {
		return nil, err
	}
	s := &Channel{ch: ch, done: make(chan error, 1)}
	go func() { s.done <- serve(ch.Endpoint(), versions, h) }()
	return s, nil
}

// Done delivers why the channel stopped being served.
func (s *Channel) Done() <-chan error { return s.done }

// Close closes the channel.
func (s *Channel) Close() error { return s.ch.Close() }

func serve(ep *ring.Endpoint, versions []ic.Version, h Handler) error {
	buf := make([]byte, ic.MaxMessage+packet.DescriptorSize+64)
	var p packet.Packet
	for {
		n, err := ep.Recv(buf)
		if errors.Is(err, ring.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := packet.Parse(buf[:n], &p); err != nil {
			return err
		}
		if p.Type != packet.TypeDataInband {
			continue
		}
		m, err := ic.Parse(p.Payload)
		if err != nil {
			return fmt.Errorf("ic: %w", err)
		}
		var a Answer
		if m.Type == ic.TypeNegotiate {
			a.Status, a.Body = negotiate(m.Body, versions)
		} else {
			a = h(m)
			if a.Body == nil {
				a.Body = m.Body
			}
		}
		reply := append([]byte(nil), p.Payload...)
		if err := ic.Reply(reply, a.Status, a.Body); err != nil {
			return err
		}
		if err := ep.Send(packet.TypeDataInband, 0, p.TransID, nil, reply); err != nil {
			return err
		}
		if a.Then != nil {
			a.Then()
		}
	}
}

// negotiate picks a framework and a service version from the host's
// offer.
func negotiate(b []byte, versions []ic.Version) (uint32, []byte) {
	offer, err := ic.ParseNegotiation(b)
	if err != nil {
		return ic.StatusFail, ic.EncodeNegotiation(ic.Negotiation{})
	}
	fw, ok1 := ic.Pick(ic.Frameworks, offer.Frameworks)
	v, ok2 := ic.Pick(versions, offer.Services)
	if !ok1 || !ok2 {
		return ic.StatusFail, ic.EncodeNegotiation(ic.Negotiation{})
	}
	return ic.StatusOK, ic.EncodeNegotiation(ic.Negotiation{Frameworks: []ic.Version{fw}, Services: []ic.Version{v}})
}
