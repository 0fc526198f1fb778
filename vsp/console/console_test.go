package console_test

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/partition/memory"
	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/packet"
	"github.com/partita-hv/partita/vmbus/uart"
	"github.com/partita-hv/partita/vmbus/xproc"
	vsc "github.com/partita-hv/partita/vsc/console"
	"github.com/partita-hv/partita/vsp/console"
)

const memSize = 4 << 20

// connect runs a server offering dev and a client over the cross-process
// transport, both in this process.
func connect(t *testing.T, dev *console.Device) (*client.Client, *host.Server) {
	mem, err := memory.New("console", memSize)
	if err != nil {
		t.Fatal(err)
	}
	tr, conn, err := xproc.NewHost(mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := host.NewServer(tr, host.Config{})
	if _, err := srv.Offer(host.OfferSpec{InterfaceType: uart.InterfaceType, InterfaceInstance: uart.InstanceCOM1}, dev); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(mem.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	gmem, err := memory.Open(os.NewFile(uintptr(fd), "guest"), memSize)
	if err != nil {
		t.Fatal(err)
	}
	g, err := xproc.Dial(conn, gmem, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	pages, err := memory.NewPageAllocator(0x10000, memSize)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(g, client.Config{Pages: pages})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Disconnect()
		g.Close()
		srv.Close()
		tr.Close()
		conn.Close()
		gmem.Close()
		mem.Close()
	})
	return c, srv
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
