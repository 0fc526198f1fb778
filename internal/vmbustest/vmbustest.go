// Package vmbustest connects a VMBus channel server and client in one
// process over the cross-process transport, for device tests.
package vmbustest

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/partition/memory"
	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/xproc"
)

const memSize = 8 << 20

// Device is one offer.
type Device struct {
	Spec   host.OfferSpec
	Device host.Device
}

// Connect offers devs from a server and connects a client to it; both
// are closed when the test ends.
func Connect(t testing.TB, devs ...Device) (*client.Client, *host.Server) {
	t.Helper()
	mem, err := memory.New("vmbustest", memSize)
	if err != nil {
		t.Fatal(err)
	}
	tr, conn, err := xproc.NewHost(mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := host.NewServer(tr, host.Config{})
	for _, d := range devs {
		if _, err := srv.Offer(d.Spec, d.Device); err != nil {
			t.Fatal(err)
		}
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
