// Package vmbustest sets up a VMBus channel server over the
// cross-process transport for tests: with a client in the same process
// (Connect), or for a guest elsewhere, such as a Generation 2 partition
// (NewHost).
package vmbustest

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vmbus/xproc"
)

// Device is one offer.
type Device struct {
	Spec   host.OfferSpec
	Device host.Device
}

// Host is a server over guest memory of its own, as the root runs one
// for a partition.
type Host struct {
	Mem       *guestmem.Memory // the host's mapping
	Transport *xproc.Host
	Server    *host.Server
	GuestConn *os.File // the guest's end of the transport socket
}

// NewHost makes size bytes of guest memory and a server offering devs,
// whose rings poll as the root's do (host.DefaultPoll); all is closed when
// the test ends.
func NewHost(t testing.TB, size uint64, devs ...Device) *Host {
	t.Helper()
	mem, err := guestmem.New("vmbustest", size)
	if err != nil {
		t.Fatal(err)
	}
	tr, conn, err := xproc.NewHost(mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &Host{Mem: mem, Transport: tr, Server: host.NewServer(tr, host.Config{Endpoint: ring.EndpointConfig{Spin: host.DefaultPoll}}), GuestConn: conn}
	t.Cleanup(func() { h.Server.Close(); tr.Close(); conn.Close(); mem.Close() })
	for _, d := range devs {
		if _, err := h.Server.Offer(d.Spec, d.Device); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// Map maps the guest memory again, as a guest process or a worker would;
// the caller closes it (or hands it to what does).
func (h *Host) Map(t testing.TB) *guestmem.Memory {
	t.Helper()
	fd, err := unix.Dup(int(h.Mem.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := guestmem.Open(os.NewFile(uintptr(fd), "guest"), h.Mem.Size())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const memSize = 8 << 20

// Connect offers devs from a server and connects a client to it in this
// process; both are closed when the test ends.
func Connect(t testing.TB, devs ...Device) (*client.Client, *host.Server) {
	t.Helper()
	h := NewHost(t, memSize, devs...)
	gmem := h.Map(t)
	g, err := xproc.Dial(h.GuestConn, gmem, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	pages, err := guestmem.NewPageAllocator(0x10000, memSize)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(g, client.Config{Pages: pages})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(); g.Close(); gmem.Close() })
	return c, h.Server
}
