// Package console is the synthetic console's guest side: a VMBus UART
// client (package vmbus/uart) that a Generation 2 guest reads and writes
// like a terminal. Write sends 64 bytes at a time, each after the host
// completed the last; Read returns input the host announced and the
// client fetched.
package console

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/packet"
	"github.com/partita-hv/partita/vmbus/uart"
)

// Console is an open console port.
type Console struct {
	ch *client.Channel

	sendMu  sync.Mutex // one Send at a time
	writeMu sync.Mutex // one Write at a time
	txDone  chan struct{}
	version chan bool

	mu     sync.Mutex
	input  []byte        // fetched, not yet read; guarded by mu
	inputC chan struct{} // closed (and replaced) when input arrives or the console ends; guarded by mu
	err    error         // why the console ended; guarded by mu
}

// Open opens the first console port the host offers.
func Open(c *client.Client) (*Console, error) {
	o, err := c.Find(uart.InterfaceType)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	ch, err := c.Open(o, client.RingConfig{SendPages: 2, RecvPages: 2})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	k := &Console{ch: ch, txDone: make(chan struct{}, 1), version: make(chan bool, 1), inputC: make(chan struct{})}
	go k.reader()
	if err := k.send(uart.Message{Type: uart.TypeHostRequest, ID: uart.RequestVersion, Version: uart.Version1}); err != nil {
		ch.Close()
		return nil, err
	}
	select {
	case ok := <-k.version:
		if !ok {
			ch.Close()
			return nil, errors.New("console: host refused protocol version 1.0")
		}
	case <-time.After(10 * time.Second):
		ch.Close()
		return nil, errors.New("console: host did not answer the version request")
	}
	return k, nil
}

func (k *Console) send(m uart.Message) error {
	b, err := uart.Encode(m)
	if err != nil {
		return err
	}
	k.sendMu.Lock()
	defer k.sendMu.Unlock()
	return k.ch.Endpoint().Send(packet.TypeDataInband, 0, 0, nil, b)
}

// reader handles the host's messages until the channel closes.
func (k *Console) reader() {
	buf := make([]byte, 4096)
	var p packet.Packet
	err := func() error {
		for {
			n, err := k.ch.Endpoint().Recv(buf)
			if err != nil {
				return err
			}
			if err := packet.Parse(buf[:n], &p); err != nil {
				return err
			}
			m, err := uart.Decode(p.Payload)
			if err != nil {
				return err
			}
			switch {
			case m.Type == uart.TypeHostResponse && m.ID == uart.RequestVersion:
				select {
				case k.version <- m.Accepted:
				default:
				}
			case m.Type == uart.TypeGuestNotification && m.ID == uart.TxCompleted:
				select {
				case k.txDone <- struct{}{}:
				default:
				}
			case m.Type == uart.TypeGuestNotification && m.ID == uart.RxDataAvailable:
				if err := k.send(uart.Message{Type: uart.TypeHostRequest, ID: uart.RequestGetRxData}); err != nil {
					return err
				}
			case m.Type == uart.TypeHostResponse && m.ID == uart.RequestGetRxData:
				k.mu.Lock()
				k.input = append(k.input, m.Data...)
				close(k.inputC)
				k.inputC = make(chan struct{})
				k.mu.Unlock()
				if m.More {
					if err := k.send(uart.Message{Type: uart.TypeHostRequest, ID: uart.RequestGetRxData}); err != nil {
						return err
					}
				}
			case m.Type == uart.TypeGuestNotification && m.ID == uart.SetModemStatus:
			}
		}
	}()
	k.mu.Lock()
	k.err = err
	close(k.inputC)
	k.inputC = make(chan struct{})
	k.mu.Unlock()
}

// Write sends p to the host, 64 bytes at a time.
func (k *Console) Write(p []byte) (int, error) {
	k.writeMu.Lock()
	defer k.writeMu.Unlock()
	done := 0
	for done < len(p) {
		n := min(len(p)-done, uart.MaxData)
		if err := k.send(uart.Message{Type: uart.TypeHostNotification, ID: uart.TxDataAvailable, Data: p[done : done+n]}); err != nil {
			return done, err
		}
		select {
		case <-k.txDone:
		case <-time.After(10 * time.Second):
			return done, errors.New("console: host did not complete a write")
		}
		done += n
	}
	return done, nil
}

// Read returns console input, waiting for some.
func (k *Console) Read(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for len(k.input) == 0 {
		if k.err != nil {
			return 0, io.EOF
		}
		c := k.inputC
		k.mu.Unlock()
		<-c
		k.mu.Lock()
	}
	n := copy(p, k.input)
	k.input = k.input[n:]
	return n, nil
}

// Close closes the port.
func (k *Console) Close() error { return k.ch.Close() }
