package xproc

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/partition/memory"
	"github.com/partita-hv/partita/vmbus"
	"github.com/partita-hv/partita/vmbus/ring"
)

const testMem = 1 << 20

// pair builds a host and an in-process guest over one memfd mapped twice.
func pair(t *testing.T) (*Host, *Guest, *os.File) {
	t.Helper()
	mem, err := memory.New(t.Name(), testMem)
	if err != nil {
		t.Fatal(err)
	}
	h, conn, err := NewHost(mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(mem.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	gmem, err := memory.Open(os.NewFile(uintptr(fd), "guest"), testMem)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Dial(conn, gmem, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); h.Close(); conn.Close(); gmem.Close(); mem.Close() })
	return h, g, conn
}

// within runs f and fails the test if it takes more than 5 s.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no result within 5 s", what)
	}
}

func TestMessagesBothWays(t *testing.T) {
	h, g, _ := pair(t)
	if err := g.PostMessage(4, []byte("initiate")); err != nil {
		t.Fatal(err)
	}
	within(t, "host receive", func() {
		conn, b, err := h.RecvMessage()
		if err != nil || conn != 4 || string(b) != "initiate" {
			t.Errorf("host got %d %q %v", conn, b, err)
		}
	})
	if err := h.PostMessage(0, []byte("version")); err != nil {
		t.Fatal(err)
	}
	within(t, "guest receive", func() {
		b, err := g.RecvMessage()
		if err != nil || string(b) != "version" {
			t.Errorf("guest got %q %v", b, err)
		}
	})
	if err := h.PostMessage(1, nil); err == nil {
		t.Error("message to vp 1 of 1 accepted")
	}
	if err := g.PostMessage(1, make([]byte, 241)); err == nil {
		t.Error("241-byte post accepted")
	}
}

func TestDoorbellsAndEvents(t *testing.T) {
	h, g, _ := pair(t)
	if err := h.SignalGuest(0, 1); err == nil {
		t.Error("signal before the guest's hello accepted")
	}
	// The host reads the hello on its way to the first message.
	g.PostMessage(1, []byte("contact"))
	within(t, "host receive", func() { h.RecvMessage() })
	if err := g.SignalEvent(0x2001); !errors.Is(err, vmbus.ErrInvalidConnectionID) {
		t.Fatalf("signal before registration: %v", err)
	}
	bell, err := h.RegisterDoorbell(0x2001)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.RegisterDoorbell(0x2001); err == nil {
		t.Error("second doorbell for one connection id accepted")
	}
	// The doorbell frame precedes this message on the socket, so once the
	// guest has the message it knows the doorbell.
	h.PostMessage(0, []byte("open result"))
	within(t, "guest receive", func() { g.RecvMessage() })
	if err := g.SignalEvent(0x2001); err != nil {
		t.Fatal(err)
	}
	within(t, "doorbell", func() {
		if err := bell.Wait(); err != nil {
			t.Error(err)
		}
	})

	// Host to guest: two signals before the guest drains coalesce into one
	// interrupt.
	w, err := g.EventWaiter(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.EventWaiter(1); err == nil {
		t.Error("second waiter for one flag accepted")
	}
	g.mu.Lock() // hold off the guest's interrupt handler
	for i := 0; i < 2; i++ {
		if err := h.SignalGuest(0, 1); err != nil {
			t.Fatal(err)
		}
	}
	g.mu.Unlock()
	within(t, "event", func() {
		if err := w.Wait(); err != nil {
			t.Error(err)
		}
	})
	if st := h.Stats(); st.SignalsToGuest != 1 {
		t.Errorf("%d interrupts for two signals of one flag", st.SignalsToGuest)
	}

	// Close wakes waiters; a closed doorbell is forgotten by the guest.
	bell.Close()
	within(t, "bell closed", func() {
		if err := bell.Wait(); !errors.Is(err, ring.ErrClosed) {
			t.Errorf("Wait after Close: %v", err)
		}
	})
	h.PostMessage(0, []byte("sync"))
	within(t, "guest receive", func() { g.RecvMessage() })
	if err := g.SignalEvent(0x2001); !errors.Is(err, vmbus.ErrInvalidConnectionID) {
		t.Errorf("signal after doorbell closed: %v", err)
	}
	w.Close()
	within(t, "waiter closed", func() {
		if err := w.Wait(); !errors.Is(err, ring.ErrClosed) {
			t.Errorf("Wait after Close: %v", err)
		}
	})
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestHostileFrames writes raw frames into the guest's end of the socket.
// Each bad one is counted and dropped, with any fds it carried closed; a
// good message afterwards still arrives.
func TestHostileFrames(t *testing.T) {
	mem, err := memory.New(t.Name(), testMem)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	h, conn, err := NewHost(mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	defer conn.Close()
	send := func(b []byte, withFD bool) {
		t.Helper()
		var oob []byte
		if withFD {
			efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(efd)
			oob = unix.UnixRights(efd)
		}
		if err := unix.Sendmsg(int(conn.Fd()), b, oob, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	hello := func(gpa uint64) []byte {
		b := appendFrame(nil, kindHello, 0, nil)
		for i := 0; i < 8; i++ {
			b = append(b, byte(gpa>>(8*i)))
		}
		return b
	}
	before := openFDs(t)
	send([]byte{9, 0, 0, 0, 0, 0, 0, 0}, true)                            // unknown kind, with an fd
	send([]byte{kindPost, 0}, false)                                      // short
	send(appendFrame(nil, kindPost, 1, make([]byte, 241)), false)         // oversized payload
	send(appendFrame(nil, kindPost, 1, []byte("x")), true)                // post with an fd
	send(hello(3), true)                                                  // unaligned page
	send(hello(testMem), true)                                            // page past the end
	send(hello(0), false)                                                 // no interrupt fd
	send(hello(0), true)                                                  // good
	send(hello(4096), true)                                               // second hello
	send([]byte{kindPost, 1, 0, 0, 0, 0, 0, 0}, false)                    // reserved byte set
	send(appendFrame(nil, kindPost, 1, make([]byte, frameBuffer)), false) // truncated by the reader
	send(appendFrame(nil, kindPost, 1, []byte("good")), false)
	within(t, "host receive", func() {
		connID, b, err := h.RecvMessage()
		if err != nil || connID != 1 || string(b) != "good" {
			t.Errorf("got %d %q %v", connID, b, err)
		}
	})
	if st := h.Stats(); st.BadFrames != 10 {
		t.Errorf("%d bad frames counted, want 10", st.BadFrames)
	}
	// The good hello's fd is kept as the interrupt line; every other fd
	// the guest sent was closed.
	if after := openFDs(t); after != before+1 {
		t.Errorf("open fds %d -> %d: leaked %d", before, after, after-before-1)
	}
	if err := h.SignalGuest(0, 5); err != nil {
		t.Errorf("signal after good hello: %v", err)
	}
}

func TestCloseUnblocks(t *testing.T) {
	h, g, _ := pair(t)
	errs := make(chan error, 2)
	go func() { _, _, err := h.RecvMessage(); errs <- err }()
	go func() { _, err := g.RecvMessage(); errs <- err }()
	time.Sleep(10 * time.Millisecond)
	g.Close()
	h.Close()
	within(t, "receivers", func() {
		for i := 0; i < 2; i++ {
			if err := <-errs; !errors.Is(err, vmbus.ErrTransportClosed) {
				t.Errorf("after Close: %v", err)
			}
		}
	})
}

// FuzzHostFrame feeds one arbitrary guest frame to the host's parser.
func FuzzHostFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseGuestFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		switch fr.kind {
		case kindPost:
			if len(fr.payload) > 240 || len(b) != postHeader+len(fr.payload) {
				t.Fatalf("post payload %d bytes from %d-byte frame", len(fr.payload), len(b))
			}
		case kindHello:
			if len(b) != helloSize {
				t.Fatalf("hello of %d bytes accepted", len(b))
			}
		default:
			t.Fatalf("kind %d accepted", fr.kind)
		}
	})
}
