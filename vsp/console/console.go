// Package console is the synthetic console's device provider: the host
// side of the VMBus UART (package vmbus/uart) that a Generation 2
// partition's console rides on. What the guest transmits goes to Output;
// Input queues bytes for the guest, which it fetches after the device
// tells it some are available.
//
// The guest is hostile: a packet that is not a UART message, a message a
// guest must not send, or anything but the version request before the
// version is agreed, is counted and fails the channel. Input never waits
// on the guest: a notifier goroutine of the open channel tells it about
// new input, so a guest that stops reading its ring holds up only its
// own channel.
package console

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/packet"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vmbus/uart"
)

// MaxInput is the console input held for the guest; Input refuses more.
const MaxInput = 64 << 10

// ErrNotReading: the guest has not fetched its input and the buffer is
// full.
var ErrNotReading = errors.New("the guest is not reading its console input")

// Device is one console port.
type Device struct {
	// Output receives what the guest writes. Writes come from one
	// goroutine at a time.
	Output io.Writer

	faults   atomic.Uint64
	outBytes atomic.Uint64

	mu       sync.Mutex
	input    []byte         // guarded by mu
	ep       *ring.Endpoint // the open channel's; guarded by mu
	ready    bool           // version agreed; guarded by mu
	notified bool           // RX_DATA_AVAILABLE sent, not yet answered to its end; guarded by mu
	done     chan struct{}  // closed when serve returns; guarded by mu
	wake     chan struct{}  // input arrived or the guest connected; made by the first Open; guarded by mu
	sendMu   sync.Mutex     // one Send at a time
}

// Faults counts guest protocol violations.
func (d *Device) Faults() uint64 { return d.faults.Load() }

// Input queues bytes for the guest and tells it, if it is listening.
func (d *Device) Input(p []byte) error {
	d.mu.Lock()
	if len(d.input)+len(p) > MaxInput {
		d.mu.Unlock()
		return ErrNotReading
	}
	d.input = append(d.input, p...)
	d.mu.Unlock()
	d.poke()
	return nil
}

// poke wakes the notifier, if a channel has been opened.
func (d *Device) poke() {
	d.mu.Lock()
	wake := d.wake
	d.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

// notifyLocked marks the guest notified and returns the endpoint to send
// RX_DATA_AVAILABLE on, if input waits and the guest has not been told.
func (d *Device) notifyLocked() *ring.Endpoint {
	if d.ep == nil || !d.ready || d.notified || len(d.input) == 0 {
		return nil
	}
	d.notified = true
	return d.ep
}

// Open starts serving a channel.
func (d *Device) Open(ch *host.Channel) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ep, d.ready, d.notified = ch.Endpoint(), false, false
	d.done = make(chan struct{})
	if d.wake == nil {
		d.wake = make(chan struct{}, 1)
	}
	go d.serve(ch, d.ep, d.done)
	return nil
}

// Close waits until the serving goroutine has left the rings. Input
// not yet fetched stays for the next open.
func (d *Device) Close(*host.Channel) {
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	if done != nil {
		<-done
	}
	d.mu.Lock()
	d.ep = nil
	d.mu.Unlock()
}

func (d *Device) send(ep *ring.Endpoint, m uart.Message) error {
	b, err := uart.Encode(m)
	if err != nil {
		return err
	}
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	return ep.Send(packet.TypeDataInband, 0, 0, nil, b)
}

func (d *Device) serve(ch *host.Channel, ep *ring.Endpoint, done chan struct{}) {
	notifierDone := make(chan struct{})
	go d.notifier(ep, notifierDone)
	defer func() {
		<-notifierDone // the endpoint is closed: a blocked Send has returned
		close(done)
	}()
	buf := make([]byte, 4096)
	var p packet.Packet
	for {
		n, err := ep.Recv(buf)
		if err != nil {
			if !errors.Is(err, ring.ErrClosed) {
				d.fail(ch, err)
			}
			return
		}
		if err := d.handle(ep, buf[:n], &p); err != nil {
			if !errors.Is(err, ring.ErrClosed) {
				d.fail(ch, err)
			}
			return
		}
	}
}

func (d *Device) fail(ch *host.Channel, err error) {
	d.faults.Add(1)
	ch.Fail(fmt.Errorf("console: %w", err))
}

// handle serves one packet from the guest.
func (d *Device) handle(ep *ring.Endpoint, b []byte, p *packet.Packet) error {
	if err := packet.Parse(b, p); err != nil {
		return err
	}
	if p.Type != packet.TypeDataInband {
		return fmt.Errorf("%v packet", p.Type)
	}
	m, err := uart.Decode(p.Payload)
	if err != nil {
		return err
	}
	switch {
	case m.Type == uart.TypeHostRequest && m.ID == uart.RequestVersion:
		ok := m.Version == uart.Version1
		d.mu.Lock()
		d.ready = ok
		d.mu.Unlock()
		if err := d.send(ep, uart.Message{Type: uart.TypeHostResponse, ID: uart.RequestVersion, Accepted: ok}); err != nil {
			return err
		}
		d.poke() // input may be waiting already
		return nil
	case !d.isReady():
		return fmt.Errorf("message type %d id %d before the version was agreed", m.Type, m.ID)
	case m.Type == uart.TypeHostNotification && m.ID == uart.TxDataAvailable:
		if d.Output != nil {
			d.Output.Write(m.Data)
		}
		d.outBytes.Add(uint64(len(m.Data)))
		return d.send(ep, uart.Message{Type: uart.TypeGuestNotification, ID: uart.TxCompleted})
	case m.Type == uart.TypeHostRequest && m.ID == uart.RequestGetRxData:
		d.mu.Lock()
		k := min(len(d.input), uart.MaxData)
		data := append([]byte(nil), d.input[:k]...)
		d.input = d.input[k:]
		more := len(d.input) > 0
		if !more {
			d.notified = false
		}
		d.mu.Unlock()
		return d.send(ep, uart.Message{Type: uart.TypeHostResponse, ID: uart.RequestGetRxData, Data: data, More: more})
	case m.Type == uart.TypeHostNotification && m.ID == uart.RxClearBuffer:
		d.mu.Lock()
		d.input, d.notified = nil, false
		d.mu.Unlock()
		return nil
	}
	return fmt.Errorf("message type %d id %d is not the guest's to send", m.Type, m.ID)
}

func (d *Device) isReady() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ready
}

// notifier sends RX_DATA_AVAILABLE when input waits and the guest has
// not been told, until the endpoint closes.
func (d *Device) notifier(ep *ring.Endpoint, done chan struct{}) {
	defer close(done)
	d.mu.Lock()
	wake := d.wake
	d.mu.Unlock()
	for {
		select {
		case <-wake:
		case <-ep.Done():
			return
		}
		d.mu.Lock()
		e := d.notifyLocked()
		d.mu.Unlock()
		if e != nil {
			if err := d.send(e, uart.Message{Type: uart.TypeGuestNotification, ID: uart.RxDataAvailable}); err != nil {
				return
			}
		}
	}
}

// Connected reports whether a guest has the port open and agreed the
// protocol version.
func (d *Device) Connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ep != nil && d.ready
}

// OutputBytes counts the bytes the guest has written.
func (d *Device) OutputBytes() uint64 { return d.outBytes.Load() }
