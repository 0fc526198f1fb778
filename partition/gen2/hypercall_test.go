package gen2

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testplatform"
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
	testplatform.Gen2(t)
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
	testplatform.Gen2(t)
	exit, _, _ := run(t, program(t, "hv"))
	if !exit.Clean || exit.Code != 1 {
		t.Fatalf("without a bus the post must fail (status 1 from the program): %+v", exit)
	}
}

// runDoorbells runs testdata/doorbell.S with an eventfd doorbell on
// connection 0x2001 and returns the exit, the doorbell's count and the
// run's duration.
func runDoorbells(t testing.TB, prog string) (Exit, uint64, time.Duration, *Partition) {
	p, err := New(Config{Name: "doorbell", Program: prog, Memory: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := p.machine.AddDoorbell(DoorbellPort, 0x2001, efd); err != nil {
		t.Fatal(err)
	}
	defer p.machine.RemoveDoorbell(DoorbellPort, 0x2001)
	start := time.Now()
	exit := p.Run()
	took := time.Since(start)
	var b [8]byte
	if _, err := unix.Read(efd, b[:]); err != nil {
		t.Fatalf("doorbell never rang: %v; exit %+v", err, exit)
	}
	return exit, binary.LittleEndian.Uint64(b[:]), took, p
}

// TestDoorbell: a fast HvSignalEvent reaches its eventfd through the
// platform without the shim (on KVM with no exit to the worker at all);
// one for a connection with no doorbell reaches the shim as a hypercall
// and is answered HV_STATUS_INVALID_CONNECTION_ID.
func TestDoorbell(t *testing.T) {
	testplatform.Gen2(t)
	exit, rang, took, p := runDoorbells(t, program(t, "doorbell"))
	if !exit.Clean || exit.Code != hvStatusInvalidConnectionID {
		t.Fatalf("exit %+v", exit)
	}
	if rang != 20000 {
		t.Errorf("doorbell rang %d times, want 20000", rang)
	}
	if n := p.doorbellExits.Load(); n != 1 {
		t.Errorf("%d doorbell writes exited to the worker, want 1", n)
	}
	if n := p.hypercalls.Load(); n != 1 {
		t.Errorf("%d hypercalls reached the shim, want 1 (the doorbell that matched nothing)", n)
	}
	t.Logf("20000 doorbells in %v (%.2f µs each, program start included)", took, float64(took.Microseconds())/20000)
}

// TestPhysicalPages: pages from HvCallPartitaAllocPages are where their
// guest physical address says, seen through the physical window.
func TestPhysicalPages(t *testing.T) {
	exit, out, p := run(t, program(t, "physpages"))
	if !exit.Clean || exit.Code != 0 || len(out) != 8 {
		t.Fatalf("exit %+v; console %q", exit, out)
	}
	gpa := binary.LittleEndian.Uint64([]byte(out))
	mem := p.mem.Bytes()
	if gpa%4096 != 0 || gpa < userBase || gpa+3*4096 > uint64(len(mem)) {
		t.Fatalf("GPA %#x", gpa)
	}
	for _, off := range []uint64{0, 8192} {
		if v := binary.LittleEndian.Uint64(mem[gpa+off:]); v != 0x1122334455667788 {
			t.Errorf("GPA %#x+%#x holds %#x", gpa, off, v)
		}
	}
	if len(p.physAllocs) != 0 {
		t.Errorf("allocations left: %v", p.physAllocs)
	}
}
