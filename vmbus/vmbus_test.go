package vmbus_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus/chanmsg"
	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/echo"
	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vmbus/xproc"
)

// Guest memory layout used by these tests: page 0 is the guest's SynIC
// event-flags page, pages 1.. are for rings.
const (
	memSize  = 16 << 20
	siefpGPA = 0
)

// partition is a host side: guest memory, the transport and the server.
type partition struct {
	mem       *guestmem.Memory
	transport *xproc.Host
	srv       *host.Server
	guestConn *os.File // the guest's end of the message socket
}

func newPartition(t testing.TB) *partition {
	t.Helper()
	mem, err := guestmem.New(t.Name(), memSize)
	if err != nil {
		t.Fatal(err)
	}
	tr, conn, err := xproc.NewHost(mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := host.NewServer(tr, host.Config{Endpoint: ring.EndpointConfig{Spin: 20 * time.Microsecond}})
	p := &partition{mem: mem, transport: tr, srv: srv, guestConn: conn}
	t.Cleanup(func() {
		srv.Close()
		tr.Close()
		conn.Close()
		mem.Close()
	})
	return p
}

func (p *partition) offerEcho(t testing.TB, instance byte) (*echo.Device, *host.Channel) {
	t.Helper()
	dev := &echo.Device{}
	spec := host.OfferSpec{InterfaceType: echo.InterfaceType}
	spec.InterfaceInstance[0] = instance
	ch, err := p.srv.Offer(spec, dev)
	if err != nil {
		t.Fatal(err)
	}
	return dev, ch
}

// attach maps the partition's memory a second time, as a guest process
// would, and attaches a transport guest to it.
func (p *partition) attach(t testing.TB) (*xproc.Guest, *guestmem.Memory) {
	t.Helper()
	fd, err := unix.Dup(int(p.mem.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	gmem, err := guestmem.Open(os.NewFile(uintptr(fd), "guest-memory"), memSize)
	if err != nil {
		t.Fatal(err)
	}
	g, err := xproc.Dial(p.guestConn, gmem, siefpGPA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); gmem.Close() })
	return g, gmem
}

// dial connects an in-process guest to the partition.
func (p *partition) dial(t testing.TB, versions ...chanmsg.Version) *client.Client {
	t.Helper()
	g, gmem := p.attach(t)
	c, err := connect(g, gmem, versions...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func connect(g *xproc.Guest, gmem *guestmem.Memory, versions ...chanmsg.Version) (*client.Client, error) {
	pages, err := guestmem.NewPageAllocator(guestmem.PageSize, gmem.Size())
	if err != nil {
		return nil, err
	}
	return client.Connect(g, client.Config{
		Pages:    pages,
		Versions: versions,
		Timeout:  10 * time.Second,
		Endpoint: ring.EndpointConfig{Spin: 20 * time.Microsecond},
	})
}

var smallRings = client.RingConfig{SendPages: 4, RecvPages: 4}

func TestConnectOfferOpenEcho(t *testing.T) {
	p := newPartition(t)
	dev, _ := p.offerEcho(t, 1)
	c := p.dial(t)
	if c.Version() != chanmsg.Version5_3 {
		t.Errorf("negotiated %v, want 5.3", c.Version())
	}
	if got := p.srv.Version(); got != chanmsg.Version5_3 {
		t.Errorf("server says %v", got)
	}
	offers := c.Offers()
	if len(offers) != 1 || offers[0].InterfaceType != echo.InterfaceType || offers[0].ConnectionID != host.ConnectionID(offers[0].ChildRelID) {
		t.Fatalf("offers %+v", offers)
	}
	ch, err := c.Open(offers[0], client.RingConfig{SendPages: 32, RecvPages: 32}) // > 26 PFNs: GPADL bodies
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	errc := make(chan error, 1)
	go func() { errc <- echo.Drain(ch.Endpoint(), n) }()
	if err := echo.Send(ch.Endpoint(), n, echo.Mixed, 1, echo.Options{Completions: true}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got, _, faults := dev.Stats(); got != n || faults != 0 {
		t.Fatalf("device verified %d packets, %d faults", got, faults)
	}
	if err := ch.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen after close works with a fresh GPADL.
	ch, err = c.Open(offers[0], smallRings)
	if err != nil {
		t.Fatal(err)
	}
	if err := echo.Send(ch.Endpoint(), 10, echo.Fixed(100), 2, echo.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	st := p.srv.Stats()
	if st.ProtocolErrors != 0 || st.ChannelFailures != 0 || st.ChannelsOpened != 2 || st.GPADLsCreated != 2 {
		t.Errorf("server stats %+v", st)
	}
	// Ring traffic, both channels closed now: the first moved n packets
	// each way, the second at most 10 from the guest.
	if st.PacketsFromGuest < n || st.PacketsFromGuest > n+10 || st.PacketsToGuest != n || st.InterruptsToGuest == 0 || st.GuestWakeups == 0 {
		t.Errorf("traffic %+v, want %d to %d packets from the guest, %d to it, some interrupts each way", st, n, n+10, n)
	}
}

func TestVersionNegotiation(t *testing.T) {
	t.Run("older guest", func(t *testing.T) {
		p := newPartition(t)
		c := p.dial(t, chanmsg.Version4_0, chanmsg.Version3_0)
		if c.Version() != chanmsg.Version4_0 {
			t.Errorf("negotiated %v", c.Version())
		}
	})
	t.Run("falls back past a refused version", func(t *testing.T) {
		p := newPartition(t)
		c := p.dial(t, chanmsg.Version1_1, chanmsg.Version5_1)
		if c.Version() != chanmsg.Version5_1 {
			t.Errorf("negotiated %v", c.Version())
		}
	})
	t.Run("nothing in common", func(t *testing.T) {
		p := newPartition(t)
		g, gmem := p.attach(t)
		if _, err := connect(g, gmem, chanmsg.Version0_13, chanmsg.Version1_1); !errors.Is(err, client.ErrNoVersion) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestRescindAndRelease(t *testing.T) {
	p := newPartition(t)
	_, hch := p.offerEcho(t, 1)
	c := p.dial(t)
	o := c.Offers()[0]
	ch, err := c.Open(o, smallRings)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.srv.Rescind(hch); err != nil {
		t.Fatal(err)
	}
	// The guest's endpoint wakes with ErrClosed, the offer disappears.
	if _, err := ch.Endpoint().Recv(make([]byte, 64)); !errors.Is(err, ring.ErrClosed) {
		t.Fatalf("Recv after rescind: %v", err)
	}
	waitFor(t, func() bool { return len(c.Offers()) == 0 })
	if err := ch.Close(); err != nil { // releases the relid
		t.Fatal(err)
	}
	// The relid comes back for a new offer once released.
	waitFor(t, func() bool {
		_, ch2 := p.offerEcho(t, 2)
		ok := ch2.RelID() == hch.RelID()
		p.srv.Rescind(ch2)
		return ok
	})
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawGuest connects at the message level only, for hostile sequences.
func rawGuest(t *testing.T, p *partition) *xproc.Guest {
	t.Helper()
	g, _ := p.attach(t)
	ic := chanmsg.NewInitiateContact(chanmsg.Version4_0, 0, 0, 0)
	if err := g.PostMessage(chanmsg.MessageConnectionID, ic.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	if m := recvMsg(t, g); !m.(*chanmsg.VersionResponse).VersionSupported {
		t.Fatal("4.0 refused")
	}
	return g
}

func recvMsg(t *testing.T, g *xproc.Guest) chanmsg.Message {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	rc := make(chan res, 1)
	go func() { b, err := g.RecvMessage(); rc <- res{b, err} }()
	select {
	case r := <-rc:
		if r.err != nil {
			t.Fatal(r.err)
		}
		m, err := chanmsg.Decode(r.b)
		if err != nil {
			t.Fatal(err)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message from host")
	}
	return nil
}

func TestHostileMessages(t *testing.T) {
	p := newPartition(t)
	_, hch := p.offerEcho(t, 1)
	g := rawGuest(t, p)
	relid := hch.RelID()
	post := func(b []byte) {
		t.Helper()
		if err := g.PostMessage(chanmsg.MessageConnectionID, b); err != nil {
			t.Fatal(err)
		}
	}
	before := p.srv.Stats().ProtocolErrors
	post([]byte{0xff, 0, 0, 0, 0, 0, 0, 0})                                            // unknown type
	post([]byte{byte(chanmsg.TypeOpenChannel), 0, 0, 0, 0, 0, 0, 0, 1})                // truncated
	post(make([]byte, 8))                                                              // type 0
	post((&chanmsg.OpenChannel{ChildRelID: relid, RingBufferGPADL: 77}).AppendTo(nil)) // no such GPADL
	post((&chanmsg.CloseChannel{ChildRelID: 999}).AppendTo(nil))                       // unknown channel
	post((&chanmsg.GPADLTeardown{ChildRelID: relid, GPADL: 5}).AppendTo(nil))          // unknown GPADL
	post((&chanmsg.GPADLBody{GPADL: 5, Data: []uint64{1}}).AppendTo(nil))              // body without header
	post(chanmsg.NewInitiateContact(chanmsg.Version4_0, 0, 0, 0).AppendTo(nil))        // already connected
	if m := recvMsg(t, g); m.Type() != chanmsg.TypeOpenChannelResult || m.(*chanmsg.OpenChannelResult).Status == 0 {
		t.Fatalf("open with unknown GPADL answered %+v", m)
	}
	if m := recvMsg(t, g); m.Type() != chanmsg.TypeVersionResponse || m.(*chanmsg.VersionResponse).VersionSupported {
		t.Fatalf("second contact answered %+v", m)
	}
	// The server still works: offers come.
	post((&chanmsg.RequestOffers{}).AppendTo(nil))
	if m := recvMsg(t, g); m.Type() != chanmsg.TypeOfferChannel {
		t.Fatalf("got %v", m.Type())
	}
	if got := p.srv.Stats().ProtocolErrors - before; got != 8 {
		t.Errorf("%d protocol errors counted, want 8", got)
	}

	// A GPADL naming a page past the end of guest memory: refused, and the
	// channel is closed and rescinded.
	hdr, bodies, err := chanmsg.SplitGPADL(relid, 0x100, []chanmsg.GPARange{{ByteCount: 3 * 4096, PFNs: []uint64{10, 11, memSize / 4096}}})
	if err != nil || len(bodies) != 0 {
		t.Fatal(err)
	}
	post(hdr.AppendTo(nil))
	m := recvMsg(t, g)
	if m.Type() != chanmsg.TypeAllOffersDelivered {
		t.Fatalf("got %v", m.Type())
	}
	if m := recvMsg(t, g); m.Type() != chanmsg.TypeGPADLCreated || m.(*chanmsg.GPADLCreated).Status == 0 {
		t.Fatalf("bad GPADL answered %+v", m)
	}
	if m := recvMsg(t, g); m.Type() != chanmsg.TypeRescindChannelOffer || m.(*chanmsg.RescindChannelOffer).ChildRelID != relid {
		t.Fatalf("expected rescind, got %+v", m)
	}
	if st := p.srv.Stats(); st.ChannelFailures != 1 {
		t.Errorf("channel failures %d", st.ChannelFailures)
	}
}

// TestCorruptRingClosesOnlyThatChannel has a guest scribble over its own
// ring header: the device fails that channel; a second channel on the same
// partition keeps streaming.
func TestCorruptRingClosesOnlyThatChannel(t *testing.T) {
	p := newPartition(t)
	_, _ = p.offerEcho(t, 1)
	good, _ := p.offerEcho(t, 2)
	c := p.dial(t)
	offers := c.Offers()
	bad, err := c.Open(offers[0], smallRings)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := c.Open(offers[1], smallRings)
	if err != nil {
		t.Fatal(err)
	}
	// One good packet, then garbage in the guest-to-host ring header.
	if err := echo.Send(bad.Endpoint(), 1, echo.Fixed(8), 1, echo.Options{}); err != nil {
		t.Fatal(err)
	}
	scribble(t, p, bad)
	waitFor(t, func() bool { return p.srv.Stats().ChannelFailures == 1 })
	waitFor(t, func() bool { return len(c.Offers()) == 1 })
	if err := echo.Send(ok.Endpoint(), 1000, echo.Mixed, 3, echo.Options{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { n, _, _ := good.Stats(); return n == 1000 })
}

// scribble corrupts the guest-to-host ring header of ch: an unaligned write
// index, and a doorbell so the host looks.
func scribble(t *testing.T, p *partition, ch *client.Channel) {
	t.Helper()
	gpa := ch.RingGPA()
	hdr, err := p.mem.Slice(gpa, 16)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(hdr[0:], 0x1234567) // write_index: unaligned, past the end
	if err := ch.Endpoint().Notify(); err != nil {
		t.Fatal(err)
	}
}

// TestCrossProcessMillionPackets runs the guest in a second OS process (this
// test binary re-executed) over shared memory, eventfd doorbells and the
// message socket, and streams a million checksummed packets of mixed sizes.
func TestCrossProcessMillionPackets(t *testing.T) {
	count := 1_000_000
	if testing.Short() {
		count = 100_000
	}
	p := newPartition(t)
	dev, hch := p.offerEcho(t, 1)
	cmd := guestProcess(t, p, "stream", count, 0)
	runBounded(t, cmd, 2*time.Minute, func() string {
		n, _, faults := dev.Stats()
		epState := "endpoint open"
		select {
		case <-hch.Endpoint().Done():
			epState = "endpoint closed"
		default:
		}
		return fmt.Sprintf("device verified %d packets, %d faults; %s %+v %v; server %+v; transport %+v",
			n, faults, epState, hch.Endpoint().Stats(), hch.Endpoint(), p.srv.Stats(), p.transport.Stats())
	})
	got, bytes, faults := dev.Stats()
	if got != uint64(count) || faults != 0 {
		t.Fatalf("device verified %d of %d packets, %d faults", got, count, faults)
	}
	st := p.srv.Stats()
	t.Logf("%d packets, %d data bytes; server %+v; transport %+v", got, bytes, st, p.transport.Stats())
	if st.ProtocolErrors != 0 || st.ChannelFailures != 0 {
		t.Errorf("server stats %+v", st)
	}
}

// runBounded runs cmd to completion, killing it and failing the test with
// state() if it takes longer than limit.
func runBounded(t testing.TB, cmd *exec.Cmd, limit time.Duration, state func() string) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("guest process: %v; %s\n%s", err, state(), out.String())
		}
	case <-time.After(limit):
		stacks := make([]byte, 1<<20)
		stacks = stacks[:runtime.Stack(stacks, true)]
		os.WriteFile(filepath.Join(t.TempDir(), "host-goroutines.txt"), stacks, 0o644)
		t.Logf("host goroutines:\n%s", stacks)
		cmd.Process.Signal(syscall.SIGQUIT) // the guest prints its goroutines
		time.Sleep(time.Second)
		cmd.Process.Kill()
		<-done
		t.Fatalf("guest process still running after %v; %s\n%s", limit, state(), out.String())
	}
}

// guestProcess prepares this test binary as a guest process: fd 3 is the
// message socket, fd 4 the guest memory.
func guestProcess(t testing.TB, p *partition, mode string, count, size int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestGuestProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"PARTITA_GUEST_MODE="+mode,
		"PARTITA_GUEST_COUNT="+strconv.Itoa(count),
		"PARTITA_GUEST_SIZE="+strconv.Itoa(size))
	cmd.ExtraFiles = []*os.File{p.guestConn, p.mem.File()}
	return cmd
}

// TestGuestProcess is the guest side of the cross-process tests; it runs
// only when re-executed by one of them.
func TestGuestProcess(t *testing.T) {
	mode := os.Getenv("PARTITA_GUEST_MODE")
	if mode == "" {
		t.Skip("runs only as the guest process of a cross-process test")
	}
	if err := runGuest(mode); err != nil {
		fmt.Fprintln(os.Stderr, "guest:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runGuest(mode string) error {
	count, _ := strconv.Atoi(os.Getenv("PARTITA_GUEST_COUNT"))
	size, _ := strconv.Atoi(os.Getenv("PARTITA_GUEST_SIZE"))
	gmem, err := guestmem.Open(os.NewFile(4, "guest-memory"), memSize)
	if err != nil {
		return err
	}
	g, err := xproc.Dial(os.NewFile(3, "vmbus"), gmem, siefpGPA)
	if err != nil {
		return err
	}
	defer g.Close()
	c, err := connect(g, gmem)
	if err != nil {
		return err
	}
	sizes := echo.Mixed
	if size > 0 {
		sizes = echo.Fixed(size)
	}
	opt := echo.Options{Completions: mode == "echo", NoChecksum: mode == "bench"}
	res, err := echo.RunGuest(c, 64, count, sizes, opt)
	if err != nil {
		return err
	}
	st, _ := json.Marshal(res.Stats)
	fmt.Printf("stats %s\n", st)
	return c.Disconnect()
}
