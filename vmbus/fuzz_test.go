package vmbus_test

import (
	"testing"
	"time"

	"github.com/partita-hv/partita/vmbus/chanmsg"
	"github.com/partita-hv/partita/vmbus/echo"
	"github.com/partita-hv/partita/vmbus/host"
)

// FuzzServer feeds a real channel server, over the real transport, a
// sequence of guest control messages cut from the input: each record is a
// connection-id selector byte, a length byte and that many bytes of
// message. Whatever the sequence, the server must not panic or stop, and
// must still answer its owner afterwards. Seeds in testdata/fuzz/FuzzServer:
// a connect with offers, an open/close/teardown/unload cycle, and stray
// messages.
func FuzzServer(f *testing.F) {
	conns := []uint32{chanmsg.MessageConnectionID, chanmsg.MessageConnectionID4, 0, 0x2001}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := newPartition(t)
		p.offerEcho(t, 1)
		g, _ := p.attach(t)
		for len(b) >= 2 {
			conn, n := conns[b[0]%4], int(b[1])
			b = b[2:]
			if n > len(b) {
				n = len(b)
			}
			if n > chanmsg.MaxMessageSize {
				n = chanmsg.MaxMessageSize
			}
			if err := g.PostMessage(conn, b[:n]); err != nil {
				t.Fatal(err)
			}
			b = b[n:]
		}
		// The loop is alive if it can take an offer; it must not have
		// stopped.
		done := make(chan error, 1)
		go func() {
			_, err := p.srv.Offer(host.OfferSpec{InterfaceType: echo.InterfaceType}, &echo.Device{})
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil && err != host.ErrNoRelID {
				t.Fatalf("server after the sequence: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("server loop stuck")
		}
		if err := p.srv.Err(); err != nil {
			t.Fatalf("server stopped: %v", err)
		}
	})
}
