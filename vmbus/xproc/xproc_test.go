package xproc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus"
	"github.com/partita-hv/partita/vmbus/chanmsg"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vmbus/synic"
)

const (
	testMem   = 1 << 20
	siefpPage = 0x3000 // the guest's event-flags page in these tests
	timeout   = 10 * time.Second
)

// newHost makes guest memory and a host over it.
func newHost(t *testing.T) (*Host, *os.File, *guestmem.Memory) {
	t.Helper()
	mem, err := guestmem.New(t.Name(), testMem)
	if err != nil {
		t.Fatal(err)
	}
	h, conn, err := NewHost(mem, nil)
	if err != nil {
		mem.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); conn.Close(); mem.Close() })
	return h, conn, mem
}

// pair builds a host and an in-process guest over one memfd mapped twice,
// as two processes would map it.
func pair(t *testing.T) (*Host, *Guest) {
	t.Helper()
	h, conn, mem := newHost(t)
	fd, err := unix.FcntlInt(mem.File().Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	gmem, err := guestmem.Open(os.NewFile(uintptr(fd), "guest-memory"), testMem)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Dial(conn, gmem, siefpPage)
	if err != nil {
		gmem.Close()
		t.Fatal(err)
	}
	conn.Close() // handed on: the guest holds its own copy
	t.Cleanup(func() { g.Close(); gmem.Close() })
	return h, g
}

// await runs f and returns its result, failing the test if it takes longer
// than timeout. f must not touch t: on a timeout it is left behind, to be
// unblocked by the test's cleanup.
func await[T any](t *testing.T, what string, f func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	c := make(chan result, 1)
	go func() { v, err := f(); c <- result{v, err} }()
	select {
	case r := <-c:
		return r.v, r.err
	case <-time.After(timeout):
		t.Fatalf("%s: nothing within %v", what, timeout)
		panic("unreachable")
	}
}

type hostMsg struct {
	connID  uint32
	payload []byte
}

func hostRecv(t *testing.T, h *Host) (hostMsg, error) {
	t.Helper()
	return await(t, "host RecvMessage", func() (hostMsg, error) {
		id, p, err := h.RecvMessage()
		return hostMsg{id, p}, err
	})
}

func guestRecv(t *testing.T, g *Guest) ([]byte, error) {
	t.Helper()
	return await(t, "guest RecvMessage", g.RecvMessage)
}

func wait(t *testing.T, what string, w ring.Waiter) error {
	t.Helper()
	_, err := await(t, what, func() (struct{}, error) { return struct{}{}, w.Wait() })
	return err
}

// expectPost receives a host message and checks it.
func expectPost(t *testing.T, h *Host, connID uint32, payload string) {
	t.Helper()
	m, err := hostRecv(t, h)
	if err != nil || m.connID != connID || string(m.payload) != payload {
		t.Fatalf("host got %#x %q %v, want %#x %q", m.connID, m.payload, err, connID, payload)
	}
}

func expectMessage(t *testing.T, g *Guest, payload string) {
	t.Helper()
	b, err := guestRecv(t, g)
	if err != nil || string(b) != payload {
		t.Fatalf("guest got %q %v, want %q", b, err, payload)
	}
}

func TestMaxPayloadIsChanmsgMax(t *testing.T) {
	if MaxPayload != chanmsg.MaxMessageSize {
		t.Fatalf("MaxPayload %d, chanmsg.MaxMessageSize %d", MaxPayload, chanmsg.MaxMessageSize)
	}
}

func TestParseGuestFrame(t *testing.T) {
	full := appendFrame(nil, kindPost, 7, bytes.Repeat([]byte{0xAA}, MaxPayload))
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"hello", helloFrame(0x5000), true},
		{"post empty", appendFrame(nil, kindPost, 4, nil), true},
		{"post full", full, true},
		{"empty", nil, false},
		{"short", []byte{kindPost, 0, 0, 0, 1, 0, 0}, false},
		{"post too long", append(full, 0), false},
		{"hello short", helloFrame(0)[:15], false},
		{"hello long", append(helloFrame(0), 0), false},
		{"hello reserved word", append(appendFrame(nil, kindHello, 1, nil), make([]byte, 8)...), false},
		{"reserved byte", []byte{kindPost, 0, 1, 0, 0, 0, 0, 0}, false},
		{"kind 0", appendFrame(nil, 0, 0, nil), false},
		{"host kind", appendFrame(nil, kindMessage, 0, []byte("x")), false},
		{"doorbell kind", appendFrame(nil, kindDoorbell, 0, nil), false},
		{"kind 255", appendFrame(nil, 255, 0, nil), false},
	} {
		f, err := parseGuestFrame(tc.b)
		if tc.ok != (err == nil) {
			t.Errorf("%s: err %v", tc.name, err)
		}
		if err != nil && !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: %v is not ErrBadFrame", tc.name, err)
		}
		if err == nil && f.kind == kindPost && (f.connID != binary.LittleEndian.Uint32(tc.b[4:]) || len(f.payload) != len(tc.b)-8) {
			t.Errorf("%s: parsed %+v", tc.name, f)
		}
	}
	if f, _ := parseGuestFrame(helloFrame(0x5000)); f.siefpGPA != 0x5000 {
		t.Errorf("hello gpa %#x", f.siefpGPA)
	}
}

func TestParseHostFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"message", appendFrame(nil, kindMessage, 0, []byte("hi")), true},
		{"message full", appendFrame(nil, kindMessage, 0, make([]byte, MaxPayload)), true},
		{"doorbell", appendFrame(nil, kindDoorbell, 0x2001, nil), true},
		{"gone", appendFrame(nil, kindGone, 0x2001, nil), true},
		{"message too long", appendFrame(nil, kindMessage, 0, make([]byte, MaxPayload+1)), false},
		{"doorbell long", appendFrame(nil, kindDoorbell, 1, []byte{0}), false},
		{"gone long", appendFrame(nil, kindGone, 1, []byte{0}), false},
		{"guest kind", appendFrame(nil, kindPost, 1, nil), false},
		{"short", []byte{kindMessage}, false},
		{"reserved", []byte{kindMessage, 0, 0, 9, 0, 0, 0, 0}, false},
	} {
		if _, err := parseHostFrame(tc.b); tc.ok != (err == nil) {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
}

func TestMessagesBothWays(t *testing.T) {
	h, g := pair(t)
	if h.VPCount() != 1 || h.Memory() == nil || g.Memory() == nil {
		t.Fatal("accessors")
	}
	for i := 0; i < 3; i++ {
		if err := g.PostMessage(4, []byte{'p', byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.PostMessage(1, bytes.Repeat([]byte{1}, MaxPayload)); err != nil {
		t.Fatal(err)
	}
	if err := g.PostMessage(1, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		expectPost(t, h, 4, string([]byte{'p', byte('0' + i)}))
	}
	if m, err := hostRecv(t, h); err != nil || m.connID != 1 || len(m.payload) != MaxPayload {
		t.Fatalf("full post: %d bytes %v", len(m.payload), err)
	}
	if m, err := hostRecv(t, h); err != nil || m.connID != 1 || m.payload == nil || len(m.payload) != 0 {
		t.Fatalf("empty post: %#v %v", m.payload, err)
	}
	for i := 0; i < 3; i++ {
		if err := h.PostMessage(0, []byte{'m', byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		expectMessage(t, g, string([]byte{'m', byte('0' + i)}))
	}
	if err := h.PostMessage(1, nil); err == nil {
		t.Error("message to vp 1 of 1 accepted")
	}
	if err := h.PostMessage(0, make([]byte, MaxPayload+1)); err == nil {
		t.Error("241-byte message accepted")
	}
	if err := g.PostMessage(1, make([]byte, MaxPayload+1)); err == nil {
		t.Error("241-byte post accepted")
	}
	if st := h.Stats(); st.MessagesIn != 5 || st.MessagesOut != 3 || st.BadFrames != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDoorbell(t *testing.T) {
	h, g := pair(t)
	const conn = 0x2001
	if err := g.SignalEvent(conn); !errors.Is(err, vmbus.ErrInvalidConnectionID) {
		t.Fatalf("signal before registration: %v", err)
	}
	bell, err := h.RegisterDoorbell(conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.RegisterDoorbell(conn); err == nil {
		t.Error("second doorbell for one connection id accepted")
	}
	// The doorbell frame precedes this message on the socket, so once the
	// guest has the message it has the doorbell.
	h.PostMessage(0, []byte("open result"))
	expectMessage(t, g, "open result")
	for i := 0; i < 3; i++ { // signals before a Wait coalesce
		if err := g.SignalEvent(conn); err != nil {
			t.Fatal(err)
		}
	}
	if err := wait(t, "doorbell", bell); err != nil {
		t.Fatal(err)
	}
	// Wait blocks again until the next signal.
	woke := make(chan error, 1)
	go func() { woke <- bell.Wait() }()
	select {
	case err := <-woke:
		t.Fatalf("Wait returned %v with no signal", err)
	case <-time.After(20 * time.Millisecond):
	}
	g.SignalEvent(conn)
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(timeout):
		t.Fatal("second signal did not wake Wait")
	}

	// Closing a doorbell wakes its Wait; the guest forgets it.
	go func() { woke <- bell.Wait() }()
	time.Sleep(10 * time.Millisecond)
	if err := bell.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if !errors.Is(err, ring.ErrClosed) {
			t.Fatalf("Wait across Close: %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("Close did not wake Wait")
	}
	if err := bell.Wait(); !errors.Is(err, ring.ErrClosed) {
		t.Errorf("Wait after Close: %v", err)
	}
	h.PostMessage(0, []byte("sync"))
	expectMessage(t, g, "sync")
	if err := g.SignalEvent(conn); !errors.Is(err, vmbus.ErrInvalidConnectionID) {
		t.Errorf("signal after doorbell closed: %v", err)
	}

	// The id can be registered again, and the new doorbell works.
	bell2, err := h.RegisterDoorbell(conn)
	if err != nil {
		t.Fatal(err)
	}
	h.PostMessage(0, []byte("reopened"))
	expectMessage(t, g, "reopened")
	if err := g.SignalEvent(conn); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, "doorbell after re-registration", bell2); err != nil {
		t.Fatal(err)
	}
}

func TestSignalGuestWakesWaiter(t *testing.T) {
	h, g := pair(t)
	if err := h.SignalGuest(0, 1); !errors.Is(err, ErrNoHello) {
		t.Errorf("signal before the host read the hello: %v", err)
	}
	// The host reads the hello on its way to the first message.
	g.PostMessage(1, []byte("contact"))
	expectPost(t, h, 1, "contact")

	for _, bad := range []uint32{0, synic.FlagsPerSlot} {
		if _, err := g.EventWaiter(bad); err == nil {
			t.Errorf("waiter for flag %d accepted", bad)
		}
	}
	w5, err := g.EventWaiter(5)
	if err != nil {
		t.Fatal(err)
	}
	w2047, err := g.EventWaiter(2047)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.EventWaiter(5); err == nil {
		t.Error("second waiter for one flag accepted")
	}
	if err := h.SignalGuest(1, 5); err == nil {
		t.Error("signal to vp 1 of 1 accepted")
	}
	if err := h.SignalGuest(0, synic.FlagsPerSlot); err == nil {
		t.Error("flag 2048 accepted")
	}
	for _, flag := range []uint32{5, 2047, 9} { // 9 has no waiter: dropped
		if err := h.SignalGuest(0, flag); err != nil {
			t.Fatal(err)
		}
	}
	if err := wait(t, "flag 5", w5); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, "flag 2047", w2047); err != nil {
		t.Fatal(err)
	}

	// Two signals of one flag before the guest drains it raise one
	// interrupt: hold off the guest's interrupt handler meanwhile.
	before := h.Stats().SignalsToGuest
	g.mu.Lock()
	for i := 0; i < 2; i++ {
		if err := h.SignalGuest(0, 5); err != nil {
			g.mu.Unlock()
			t.Fatal(err)
		}
	}
	g.mu.Unlock()
	if err := wait(t, "coalesced flag 5", w5); err != nil {
		t.Fatal(err)
	}
	if n := h.Stats().SignalsToGuest - before; n != 1 {
		t.Errorf("%d interrupts for two signals of one flag", n)
	}

	// A closed waiter wakes with ring.ErrClosed and frees its flag.
	w5.Close()
	if err := w5.Wait(); !errors.Is(err, ring.ErrClosed) {
		t.Errorf("Wait after Close: %v", err)
	}
	again, err := g.EventWaiter(5)
	if err != nil {
		t.Fatalf("flag 5 after its waiter closed: %v", err)
	}
	again.Close()
}

// TestSignalCoalescing plays the guest by hand, to watch the interrupt
// eventfd and the event-flags page directly.
func TestSignalCoalescing(t *testing.T) {
	h, conn, mem := newHost(t)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := unix.Sendmsg(int(conn.Fd()), helloFrame(siefpPage), unix.UnixRights(efd), nil, 0); err != nil {
		t.Fatal(err)
	}
	unix.Sendmsg(int(conn.Fd()), appendFrame(nil, kindPost, 1, []byte("sync")), nil, nil, 0)
	expectPost(t, h, 1, "sync")
	page, _ := mem.Slice(siefpPage, guestmem.PageSize)
	flags, _ := synic.NewEventFlags(page)
	counter := func() uint64 {
		var b [8]byte
		if n, err := unix.Read(efd, b[:]); err != nil || n != 8 {
			return 0
		}
		return binary.LittleEndian.Uint64(b[:])
	}
	drained := func() (got []uint32) {
		flags.Drain(func(f uint32) { got = append(got, f) })
		return got
	}

	for i := 0; i < 3; i++ {
		h.SignalGuest(0, 7)
	}
	h.SignalGuest(0, 300)
	if st := h.Stats(); st.SignalsToGuest != 2 {
		t.Errorf("%d eventfd writes for flags 7,7,7,300; want 2", st.SignalsToGuest)
	}
	if c := counter(); c != 2 {
		t.Errorf("eventfd counter %d, want 2", c)
	}
	if got := drained(); len(got) != 2 || got[0] != 7 || got[1] != 300 {
		t.Errorf("flags set %v, want [7 300]", got)
	}
	h.SignalGuest(0, 7) // clear again: interrupts again
	if st := h.Stats(); st.SignalsToGuest != 3 || counter() != 1 {
		t.Errorf("after drain: %+v", st)
	}
}

func TestCloseUnblocks(t *testing.T) {
	h, g := pair(t)
	g.PostMessage(1, []byte("x"))
	expectPost(t, h, 1, "x")
	bell, err := h.RegisterDoorbell(0x2002)
	if err != nil {
		t.Fatal(err)
	}
	w, err := g.EventWaiter(2)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	go func() { _, _, err := h.RecvMessage(); errs <- err }()
	go func() { _, err := g.RecvMessage(); errs <- err }()
	go func() { errs <- bell.Wait() }()
	go func() { errs <- w.Wait() }()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-errs:
		t.Fatalf("returned before Close: %v", err)
	default:
	}
	if err := g.Close(); err != nil {
		t.Errorf("guest Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("host Close: %v", err)
	}
	for i := 0; i < 4; i++ {
		select {
		case err := <-errs:
			if !errors.Is(err, vmbus.ErrTransportClosed) && !errors.Is(err, ring.ErrClosed) {
				t.Errorf("after Close: %v", err)
			}
		case <-time.After(timeout):
			t.Fatalf("%d of 4 blocked calls still blocked after Close", 4-i)
		}
	}
	// Everything after Close fails cleanly.
	if _, _, err := h.RecvMessage(); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("host RecvMessage after Close: %v", err)
	}
	if err := h.PostMessage(0, nil); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("host PostMessage after Close: %v", err)
	}
	if err := h.SignalGuest(0, 2); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("SignalGuest after Close: %v", err)
	}
	if _, err := h.RegisterDoorbell(0x2003); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("RegisterDoorbell after Close: %v", err)
	}
	if err := bell.Wait(); !errors.Is(err, ring.ErrClosed) {
		t.Errorf("doorbell Wait after Close: %v", err)
	}
	if _, err := g.RecvMessage(); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("guest RecvMessage after Close: %v", err)
	}
	if err := g.PostMessage(1, nil); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("guest PostMessage after Close: %v", err)
	}
	if err := g.SignalEvent(0x2002); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("SignalEvent after Close: %v", err)
	}
	if _, err := g.EventWaiter(3); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("EventWaiter after Close: %v", err)
	}
	if h.Close() != nil || g.Close() != nil || bell.Close() != nil || w.Close() != nil {
		t.Error("second Close failed")
	}
}

// TestHangUp: either side closing shows at the other as a closed
// transport, after what was already sent.
func TestHangUp(t *testing.T) {
	h, g := pair(t)
	g.PostMessage(1, []byte("last words"))
	h.PostMessage(0, []byte("last reply"))
	g.Close()
	expectPost(t, h, 1, "last words")
	if _, err := hostRecv(t, h); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("host RecvMessage after the guest closed: %v", err)
	}

	h2, g2 := pair(t)
	h2.PostMessage(0, []byte("bye"))
	h2.Close()
	expectMessage(t, g2, "bye")
	if _, err := guestRecv(t, g2); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("guest RecvMessage after the host closed: %v", err)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // ReadDir's own descriptor
}

// TestHostileFrames writes raw frames into the guest's end of the socket.
// Each bad one is counted and dropped with every fd it carried closed; the
// host keeps working and a good message afterwards still arrives.
func TestHostileFrames(t *testing.T) {
	h, conn, _ := newHost(t)
	sock := int(conn.Fd())
	newFD := func(kind string) int {
		t.Helper()
		switch kind {
		case "eventfd":
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			return fd
		case "pipe": // a pipe whose buffer fills: a write would block
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			unix.Close(p[0])
			return p[1]
		}
		t.Fatalf("fd kind %q", kind)
		return -1
	}
	// send sends b with fds of the given kinds, then closes our copies:
	// whatever the host does not keep must be closed by the host.
	send := func(b []byte, fdKinds ...string) {
		t.Helper()
		var fds []int
		for _, k := range fdKinds {
			fds = append(fds, newFD(k))
		}
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		if err := unix.Sendmsg(sock, b, oob, nil, 0); err != nil {
			t.Fatal(err)
		}
		closeAll(fds)
	}
	before := openFDs(t)
	send([]byte{9, 0, 0, 0, 0, 0, 0, 0}, "eventfd")                                      // unknown kind, with an fd
	send([]byte{kindPost, 0})                                                            // short
	send(nil)                                                                            // zero-length record
	send([]byte{kindPost}, "eventfd")                                                    // 1 byte with an fd
	send(appendFrame(nil, kindPost, 1, make([]byte, MaxPayload+1)))                      // oversized payload
	send(appendFrame(nil, kindPost, 1, []byte("x")), "eventfd")                          // post with an fd
	send(appendFrame(nil, kindPost, 1, []byte("x")), "eventfd", "eventfd", "eventfd")    // more fds than the buffer holds
	send(appendFrame(nil, kindMessage, 0, []byte("x")))                                  // a host-to-guest kind
	send(helloFrame(3), "eventfd")                                                       // unaligned page
	send(helloFrame(testMem), "eventfd")                                                 // page past the end
	send(helloFrame(^uint64(0)&^(guestmem.PageSize-1)), "eventfd")                       // page at the top of the address space
	send(helloFrame(siefpPage))                                                          // no interrupt fd
	send(helloFrame(siefpPage), "pipe")                                                  // interrupt fd not an eventfd
	send(helloFrame(siefpPage), "eventfd", "eventfd")                                    // two fds
	send(append(appendFrame(nil, kindHello, 1, nil), make([]byte, 8)...), "eventfd")     // reserved word set
	send(helloFrame(siefpPage), "eventfd")                                               // good
	send(helloFrame(0), "eventfd")                                                       // second hello
	send([]byte{kindPost, 1, 0, 0, 0, 0, 0, 0})                                          // reserved byte set
	send(appendFrame(nil, kindPost, 1, make([]byte, frameBuffer)))                       // truncated by the reader
	send(appendFrame(nil, kindPost, 1, make([]byte, frameBuffer)), "eventfd", "eventfd") // truncated, with fds
	const bad = 19
	if err := h.SignalGuest(0, 5); !errors.Is(err, ErrNoHello) {
		t.Errorf("signal before the host read a hello: %v", err)
	}
	send(appendFrame(nil, kindPost, 1, []byte("good")))
	expectPost(t, h, 1, "good")
	if st := h.Stats(); st.BadFrames != bad || st.MessagesIn != 1 {
		t.Errorf("stats %+v, want %d bad frames and 1 message", st, bad)
	}
	// The good hello's fd is kept as the interrupt line; every other fd
	// the guest sent was closed.
	if after := openFDs(t); after != before+1 {
		t.Errorf("open fds %d -> %d: leaked %d", before, after, after-before-1)
	}
	if err := h.SignalGuest(0, 5); err != nil {
		t.Errorf("signal after a good hello: %v", err)
	}
	// The host still works both ways.
	if err := h.PostMessage(0, []byte("reply")); err != nil {
		t.Error(err)
	}
	buf := make([]byte, 64)
	if n, _, _, _, err := unix.Recvmsg(sock, buf, nil, 0); err != nil || string(buf[8:n]) != "reply" {
		t.Errorf("guest end read %q %v", buf[:n], err)
	}
	h.Close()
	if after := openFDs(t); after != before-1 {
		t.Errorf("open fds %d -> %d after Close, want %d (socket and interrupt eventfd closed)", before, after, before-1)
	}
}

// TestCrossProcess runs the guest in a child process (this test binary
// re-executed): fd 3 is its socket end, fd 4 the memfd.
func TestCrossProcess(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		crossProcessChild(t)
		return
	}
	h, conn, mem := newHost(t)
	mem.WriteAt([]byte("partita"), 0x10000)

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrossProcess$", "-test.v", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.ExtraFiles = []*os.File{conn, mem.File()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("child output:\n%s", out.String())
		}
	})
	conn.Close() // the child's now; the host must see it hang up

	// 1. The child dials and posts what it read from guest memory.
	expectPost(t, h, 1, "hello partita")
	if b, _ := mem.Slice(0x11000, 5); string(b) != "guest" {
		t.Errorf("child's write to guest memory reads %q", b)
	}
	// 2. Doorbell, then a message telling the child to wait for flag 5.
	bell, err := h.RegisterDoorbell(0x2005)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.PostMessage(0, []byte("go")); err != nil {
		t.Fatal(err)
	}
	expectPost(t, h, 1, "waiting")
	// 3. Raise flag 5; the child wakes and rings the doorbell.
	if err := h.SignalGuest(0, 5); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, "child's doorbell", bell); err != nil {
		t.Fatal(err)
	}
	expectPost(t, h, 1, "done")
	// 4. The child exits: the host sees it hang up.
	if _, err := hostRecv(t, h); !errors.Is(err, vmbus.ErrTransportClosed) {
		t.Errorf("after the child exited: %v", err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("child: %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("child did not exit")
	}
	if st := h.Stats(); st.BadFrames != 0 || st.MessagesIn != 3 || st.SignalsToGuest != 1 {
		t.Errorf("stats %+v", st)
	}
}

const childEnv = "XPROC_TEST_CHILD"

func crossProcessChild(t *testing.T) {
	mem, err := guestmem.Open(os.NewFile(4, "guest-memory"), testMem)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	g, err := Dial(os.NewFile(3, "vmbus"), mem, siefpPage)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	w, err := g.EventWaiter(5)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := mem.Slice(0x10000, 7)
	mem.WriteAt([]byte("guest"), 0x11000)
	if err := g.PostMessage(1, append([]byte("hello "), b...)); err != nil {
		t.Fatal(err)
	}
	expectMessage(t, g, "go")
	g.PostMessage(1, []byte("waiting"))
	if err := wait(t, "flag 5", w); err != nil {
		t.Fatal(err)
	}
	if err := g.SignalEvent(0x2005); err != nil {
		t.Fatal(err)
	}
	if err := g.PostMessage(1, []byte("done")); err != nil {
		t.Fatal(err)
	}
}

// FuzzHostFrame feeds one arbitrary guest frame to the host's parser. A
// frame it accepts must be exactly what the guest side would build.
func FuzzHostFrame(f *testing.F) {
	f.Add(helloFrame(0x3000))
	f.Add(appendFrame(nil, kindPost, 4, []byte("\x0e\x00\x00\x00\x00\x00\x00\x00")))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseGuestFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v is not ErrBadFrame", err)
			}
			return
		}
		var again []byte
		switch fr.kind {
		case kindPost:
			if len(fr.payload) > MaxPayload {
				t.Fatalf("post payload of %d bytes accepted", len(fr.payload))
			}
			again = appendFrame(nil, kindPost, fr.connID, fr.payload)
		case kindHello:
			again = helloFrame(fr.siefpGPA)
		default:
			t.Fatalf("kind %d accepted", fr.kind)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted % x, which re-encodes as % x", b, again)
		}
	})
}
