package gen2

import (
	"sync"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
)

// recordingBus answers a post with two messages and an event flag, from
// another goroutine, as a VMBus host would.
type recordingBus struct {
	mu      sync.Mutex
	p       *Partition
	posts   []string
	signals [][2]uint32
}

func (b *recordingBus) PostMessage(conn, typ uint32, payload []byte) uint16 {
	b.mu.Lock()
	b.posts = append(b.posts, string(payload))
	p := b.p
	b.mu.Unlock()
	if conn != 4 || typ != 1 {
		return hvStatusInvalidConnectionID
	}
	go func() {
		time.Sleep(20 * time.Millisecond) // the program is asleep by now
		p.DeliverMessage(2, 1, []byte("reply-1\n"))
		p.DeliverMessage(2, 1, []byte("reply-2\n")) // queued behind the first
		time.Sleep(20 * time.Millisecond)
		p.SetEventFlag(2, 7)
	}()
	return hvStatusSuccess
}

func (b *recordingBus) SignalEvent(conn uint32, flag uint16) uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.signals = append(b.signals, [2]uint32{conn, uint32(flag)})
	return hvStatusSuccess
}

// TestHypercallsAndSynIC: a program posts a message and signals an event
// through the hypercall page, sleeps in the wait hypercall, receives two
// messages (the second after EOM) and sees an event flag.
func TestHypercallsAndSynIC(t *testing.T) {
	testenv.RequireKVM(t)
	bus := &recordingBus{}
	var out testenv.Buffer
	p, err := New(Config{Name: "hv", Program: program(t, "hv"), Memory: 16 << 20, Console: &out, Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	bus.p = p
	exit := p.Run()
	if !exit.Clean || exit.Code != 0 {
		t.Fatalf("exit %+v; console %q", exit, out.String())
	}
	if out.String() != "reply-1\nreply-2\n" {
		t.Errorf("console %q", out.String())
	}
	if len(bus.posts) != 1 || bus.posts[0] != "hello" || len(bus.signals) != 1 || bus.signals[0] != [2]uint32{0x2005, 3} {
		t.Errorf("bus saw posts %q, signals %v", bus.posts, bus.signals)
	}
}

// TestHypercallsRefused: without a bus, or with bad input, hypercalls
// answer with Hyper-V's status codes and the partition goes on.
func TestHypercallsRefused(t *testing.T) {
	testenv.RequireKVM(t)
	exit, _, _ := run(t, program(t, "hv"))
	if !exit.Clean || exit.Code != 1 {
		t.Fatalf("without a bus the post must fail (status 1 from the program): %+v", exit)
	}
}
