package console_test

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/vmbustest"
	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/packet"
	"github.com/partita-hv/partita/vmbus/uart"
	vsc "github.com/partita-hv/partita/vsc/console"
	"github.com/partita-hv/partita/vsp/console"
)

func connect(t *testing.T, dev *console.Device) (*client.Client, *host.Server) {
	return vmbustest.Connect(t, vmbustest.Device{Spec: host.OfferSpec{InterfaceType: uart.InterfaceType, InterfaceInstance: uart.InstanceCOM1}, Device: dev})
}

func TestConsole(t *testing.T) {
	var out testenv.Buffer
	dev := &console.Device{Output: &out}
	if err := dev.Input([]byte("typed early\n")); err != nil { // before the guest connects
		t.Fatal(err)
	}
	c, _ := connect(t, dev)
	k, err := vsc.Open(c)
	if err != nil {
		t.Fatal(err)
	}
	banner := strings.Repeat("partita console ", 20) // several 64-byte messages
	if n, err := k.Write([]byte(banner)); err != nil || n != len(banner) {
		t.Fatalf("write %d, %v", n, err)
	}
	if out.String() != banner {
		t.Errorf("host got %q", out.String())
	}
	big := bytes.Repeat([]byte("0123456789"), 100) // more than one fetch
	if err := dev.Input(big); err != nil {
		t.Fatal(err)
	}
	want := append([]byte("typed early\n"), big...)
	got := make([]byte, len(want))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(k, got); done <- err }()
	select {
	case err := <-done:
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("guest read %q, %v", got, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("input never reached the guest")
	}
	if dev.Faults() != 0 {
		t.Errorf("%d faults", dev.Faults())
	}
}

// TestHostileConsoleGuest: garbage on the console channel fails that
// channel alone (the server rescinds it); the server goes on.
func TestHostileConsoleGuest(t *testing.T) {
	for name, payload := range map[string][]byte{
		"truncated TX":      {1, 1, 2, 0, 200},
		"a host's message":  {1, 4, 3, 0, 0, 0, 0, 0},
		"TX before version": {1, 1, 2, 0, 1, 'x'},
		"unknown header":    {9, 9, 9, 9},
	} {
		dev := &console.Device{}
		c, srv := connect(t, dev)
		o, err := c.Find(uart.InterfaceType)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := c.Open(o, client.RingConfig{SendPages: 2, RecvPages: 2})
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		ch.Endpoint().Send(packet.TypeDataInband, 0, 0, nil, payload)
		deadline := time.Now().Add(5 * time.Second)
		for srv.Stats().ChannelFailures == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if dev.Faults() != 1 || srv.Stats().ChannelFailures != 1 {
			t.Errorf("%s: device faults %d, server %+v", name, dev.Faults(), srv.Stats())
		}
		if srv.Err() != nil {
			t.Errorf("%s: server stopped: %v", name, srv.Err())
		}
		ch.Close()
	}
}
