package uart

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

// rig is a UART with its output and interrupt line captured.
type rig struct {
	t     *testing.T
	u     *UART
	out   bytes.Buffer
	mu    sync.Mutex
	level bool
	calls int
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t}
	r.u = New(&r.out, func(level bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if level == r.level {
			t.Errorf("irq(%v) called without a level change", level)
		}
		r.level = level
		r.calls++
	})
	return r
}

func (r *rig) in(off uint64) uint8 {
	var b [1]byte
	r.u.Read(off, b[:])
	return b[0]
}

func (r *rig) outb(off uint64, v uint8) { r.u.Write(off, []byte{v}) }

func (r *rig) irq() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.level
}

func (r *rig) wantIIR(want uint8) {
	r.t.Helper()
	if got := r.in(regIIR); got != want {
		r.t.Errorf("IIR = %#02x, want %#02x", got, want)
	}
}

func (r *rig) wantIRQ(want bool) {
	r.t.Helper()
	if got := r.irq(); got != want {
		r.t.Errorf("irq level = %v, want %v", got, want)
	}
}

func TestResetValues(t *testing.T) {
	r := newRig(t)
	for _, c := range []struct {
		off  uint64
		want uint8
	}{
		{regIER, 0}, {regIIR, 0x01}, {regLCR, 0}, {regMCR, 0},
		{regLSR, 0x60}, {regMSR, 0xb0}, {regSCR, 0},
	} {
		if got := r.in(c.off); got != c.want {
			t.Errorf("register %d = %#02x at reset, want %#02x", c.off, got, c.want)
		}
	}
}

// TestSeaBIOSSequence follows SeaBIOS: its debug-port setup (8N1 at
// divisor 1), its COM-port detection (enable the THRE interrupt and expect
// IIR to report it), and its polled output.
func TestSeaBIOSSequence(t *testing.T) {
	r := newRig(t)
	// Detection.
	r.outb(regIER, 0x02)
	if got := r.in(regIER); got != 0x02 {
		t.Fatalf("IER = %#02x, want 0x02", got)
	}
	if got := r.in(regIIR); got&0x3f != 0x02 {
		t.Fatalf("IIR = %#02x, want THRE (0x02) in bits 0-5", got)
	}
	r.outb(regIER, 0)
	// Debug-port setup.
	r.outb(regLCR, 0x80|0x03)
	r.outb(regData, 1)
	r.outb(regIER, 0)
	r.outb(regLCR, 0x03)
	r.outb(regIIR, 0x07) // FIFO on, both reset, trigger 1
	for _, c := range []byte("hello") {
		for r.in(regLSR)&0x60 != 0x60 {
		}
		r.outb(regData, c)
	}
	if got := r.out.String(); got != "hello" {
		t.Errorf("out = %q, want %q", got, "hello")
	}
	if got := r.in(regLSR); got&0x60 != 0x60 {
		t.Errorf("LSR = %#02x, want THRE and TEMT", got)
	}
	if r.calls != 0 {
		t.Errorf("irq called %d times with OUT2 clear", r.calls)
	}
	if s := r.u.Stats(); s.Transmitted != 5 {
		t.Errorf("Stats = %+v, want 5 transmitted", s)
	}
}

// TestLinuxSequence follows the 8250 driver's startup and set_termios,
// then an interrupt-driven receive and transmit.
func TestLinuxSequence(t *testing.T) {
	r := newRig(t)
	// serial8250_clear_fifos, then read the status registers to clear them.
	r.outb(regIIR, 0x01)
	r.outb(regIIR, 0x07)
	r.outb(regIIR, 0x00)
	r.in(regLSR)
	r.in(regData)
	r.in(regIIR)
	r.in(regMSR)
	r.outb(regLCR, 0x03)
	r.outb(regMCR, mcrDTR|mcrRTS|mcrOUT2)
	r.wantIRQ(false)
	// set_termios: 115200 8N1, FIFO with trigger 8.
	r.outb(regLCR, 0x83)
	r.outb(regData, 1)
	r.outb(regIER, 0)
	r.outb(regLCR, 0x03)
	r.outb(regIIR, 0x81)
	r.wantIIR(0xc1)
	r.outb(regIER, ierRDA|ierRLS)
	r.wantIRQ(false)

	// One typed character: below the trigger, so a character timeout.
	if n := r.u.Receive([]byte("x")); n != 1 {
		t.Fatalf("Receive accepted %d, want 1", n)
	}
	r.wantIRQ(true)
	r.wantIIR(0xcc)
	if got := r.in(regLSR); got&lsrDR == 0 {
		t.Errorf("LSR = %#02x, want DR", got)
	}
	if got := r.in(regData); got != 'x' {
		t.Errorf("RBR = %q, want 'x'", got)
	}
	r.wantIRQ(false)
	r.wantIIR(0xc1)

	// Transmit: enable THRI, get an interrupt, write, stop when done.
	r.outb(regIER, ierRDA|ierRLS|ierTHRE)
	r.wantIRQ(true)
	for _, c := range []byte("hello") {
		r.wantIIR(0xc2)
		r.wantIRQ(false)
		r.outb(regData, c)
		r.wantIRQ(true)
	}
	r.outb(regIER, ierRDA|ierRLS)
	r.wantIRQ(false)
	if got := r.out.String(); got != "hello" {
		t.Errorf("out = %q, want %q", got, "hello")
	}
}

func TestReceive(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, 0x01)
	if n := r.u.Receive([]byte("abc")); n != 3 {
		t.Fatalf("Receive accepted %d, want 3", n)
	}
	var got []byte
	for r.in(regLSR)&lsrDR != 0 {
		got = append(got, r.in(regData))
	}
	if string(got) != "abc" {
		t.Errorf("read %q, want %q", got, "abc")
	}
	if got := r.in(regData); got != 0 {
		t.Errorf("RBR of an empty FIFO = %#02x, want 0", got)
	}
	// Wrap the ring a few times.
	for i := 0; i < 5; i++ {
		in := []byte("0123456789abcdef")
		if n := r.u.Receive(in); n != 16 {
			t.Fatalf("Receive accepted %d, want 16", n)
		}
		got = got[:0]
		for j := 0; j < 16-i; j++ {
			got = append(got, r.in(regData))
		}
		if string(got) != string(in[:16-i]) {
			t.Fatalf("round %d: read %q", i, got)
		}
		for r.in(regLSR)&lsrDR != 0 {
			r.in(regData)
		}
	}
	if s := r.u.Stats(); s.Received != 3+5*16 || s.Overruns != 0 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestReceiveFlowControl(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, 0xc1) // FIFO, trigger 14
	in := []byte("0123456789abcdefXYZW")
	n := r.u.Receive(in)
	if n != 16 {
		t.Fatalf("Receive accepted %d, want 16", n)
	}
	if got := r.in(regLSR); got != lsrDR|lsrTHRE|lsrTEMT {
		t.Errorf("LSR = %#02x, want DR|THRE|TEMT (no overrun)", got)
	}
	if n := r.u.Receive(in[n:]); n != 0 {
		t.Fatalf("Receive into a full FIFO accepted %d", n)
	}
	r.in(regData)
	if n := r.u.Receive(in[16:]); n != 1 {
		t.Fatalf("Receive after one read accepted %d, want 1", n)
	}
	for i := 1; i < 17; i++ {
		if got := r.in(regData); got != in[i] {
			t.Fatalf("byte %d = %q, want %q", i, got, in[i])
		}
	}
	if s := r.u.Stats(); s.Overruns != 0 || s.Received != 17 {
		t.Errorf("Stats = %+v, want 0 overruns, 17 received", s)
	}
	// Without FIFOs, the holding register takes one byte.
	r.outb(regIIR, 0)
	if n := r.u.Receive([]byte("ab")); n != 1 {
		t.Fatalf("Receive without FIFO accepted %d, want 1", n)
	}
}

// receiveAll runs ReceiveAll on a goroutine; its result arrives on the
// channel.
func (r *rig) receiveAll(b []byte, done <-chan struct{}) <-chan int {
	res := make(chan int, 1)
	go func() { res <- r.u.ReceiveAll(b, done) }()
	return res
}

// stillWaiting fails the test if ReceiveAll has returned.
func stillWaiting(t *testing.T, res <-chan int) {
	t.Helper()
	select {
	case n := <-res:
		t.Fatalf("ReceiveAll returned %d while the FIFO was full", n)
	case <-time.After(50 * time.Millisecond):
	}
}

func result(t *testing.T, res <-chan int) int {
	t.Helper()
	select {
	case n := <-res:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("ReceiveAll still blocked after 10 s")
		return 0
	}
}

// TestReceiveAllWaitsForGuest: ReceiveAll fills the FIFO, waits while it
// is full, and delivers every byte, in order and without an overrun, as
// the guest reads them.
func TestReceiveAllWaitsForGuest(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, 0xc1) // FIFO, trigger 14
	in := make([]byte, 100)
	for i := range in {
		in[i] = byte(i * 7)
	}
	res := r.receiveAll(in, nil)
	stillWaiting(t, res)
	if s := r.u.Stats(); s.Received != 16 {
		t.Fatalf("received %d with the guest not reading, want 16", s.Received)
	}
	for i := range in {
		deadline := time.Now().Add(10 * time.Second)
		for r.in(regLSR)&lsrDR == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("byte %d never arrived", i)
			}
			time.Sleep(100 * time.Microsecond)
		}
		if got := r.in(regData); got != in[i] {
			t.Fatalf("byte %d = %#x, want %#x", i, got, in[i])
		}
	}
	if n := result(t, res); n != len(in) {
		t.Fatalf("ReceiveAll accepted %d, want %d", n, len(in))
	}
	if s := r.u.Stats(); s.Received != uint64(len(in)) || s.Overruns != 0 {
		t.Errorf("Stats = %+v", s)
	}
}

// TestReceiveAllDone: closing done ends the wait, reporting only what
// entered the FIFO; a closed done does not stop bytes that fit.
func TestReceiveAllDone(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, 0x01)
	done := make(chan struct{})
	res := r.receiveAll(make([]byte, 20), done)
	stillWaiting(t, res)
	close(done)
	if n := result(t, res); n != 16 {
		t.Fatalf("ReceiveAll accepted %d, want 16", n)
	}
	r.in(regData)
	r.in(regData)
	if n := r.u.ReceiveAll([]byte("abc"), done); n != 2 {
		t.Fatalf("ReceiveAll with done closed and room for 2 accepted %d", n)
	}
}

// TestReceiveAllFIFOReset: resetting the receive FIFO, or switching FIFO
// mode, makes room too; without FIFOs one byte fits at a time.
func TestReceiveAllFIFOReset(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, 0x01)
	res := r.receiveAll(make([]byte, 20), nil)
	stillWaiting(t, res)
	r.outb(regIIR, 0x03) // reset the receive FIFO: the last 4 go in
	if n := result(t, res); n != 20 {
		t.Fatalf("ReceiveAll accepted %d, want 20", n)
	}
	r.outb(regIIR, 0x03)
	res = r.receiveAll([]byte("0123456789abcdefXY"), nil)
	stillWaiting(t, res)
	r.outb(regIIR, 0x00) // FIFOs off: cleared, then one byte at a time
	got := ""
	for len(got) < 2 {
		if r.in(regLSR)&lsrDR != 0 {
			got += string(r.in(regData))
		}
	}
	if n := result(t, res); n != 18 || got != "XY" {
		t.Fatalf("ReceiveAll accepted %d, guest read %q", n, got)
	}
}

func TestOverrun(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, 0xc1) // FIFO, trigger 14
	r.outb(regMCR, mcrLoop|mcrOUT2)
	r.outb(regIER, ierRLS)
	in := []byte("0123456789abcdefXYZW")
	for _, c := range in {
		r.outb(regData, c)
	}
	r.wantIRQ(true)
	r.wantIIR(0xc6)
	if got := r.in(regLSR); got != lsrDR|lsrOE|lsrTHRE|lsrTEMT {
		t.Errorf("LSR = %#02x, want DR|OE|THRE|TEMT", got)
	}
	r.wantIRQ(false)
	if got := r.in(regLSR); got&lsrOE != 0 {
		t.Errorf("LSR = %#02x: OE not cleared by the first read", got)
	}
	// The FIFO kept the first 16 bytes.
	for i := 0; i < 16; i++ {
		if got := r.in(regData); got != in[i] {
			t.Fatalf("byte %d = %q, want %q", i, got, in[i])
		}
	}
	if s := r.u.Stats(); s.Overruns != 4 || s.Received != 16 || s.Transmitted != 20 {
		t.Errorf("Stats = %+v, want 4 overruns, 16 received, 20 transmitted", s)
	}

	// Without FIFOs, the second byte overruns.
	r.outb(regIIR, 0)
	r.outb(regData, 'a')
	r.outb(regData, 'b')
	if got := r.in(regLSR); got&(lsrOE|lsrDR) != lsrOE|lsrDR {
		t.Errorf("LSR = %#02x, want DR|OE", got)
	}
	if got := r.in(regData); got != 'a' {
		t.Errorf("RBR = %q, want 'a'", got)
	}
}

func TestReceivedDataInterrupt(t *testing.T) {
	r := newRig(t)
	r.outb(regIER, ierRDA)
	r.u.Receive([]byte("a"))
	r.wantIIR(0x04)
	r.wantIRQ(false) // OUT2 clear gates the line
	r.outb(regMCR, mcrOUT2)
	r.wantIRQ(true)
	r.in(regData)
	r.wantIRQ(false)
	r.wantIIR(0x01)

	// IER bit 0 clear: data but no interrupt.
	r.outb(regIER, 0)
	r.u.Receive([]byte("b"))
	r.wantIRQ(false)
	r.outb(regIER, ierRDA)
	r.wantIRQ(true)
	r.in(regData)
	r.wantIRQ(false)

	// FIFO trigger 4: timeout below it, RDA at it, timeout again below.
	r.outb(regIIR, 0x41)
	r.u.Receive([]byte("123"))
	r.wantIIR(0xcc)
	r.u.Receive([]byte("4"))
	r.wantIIR(0xc4)
	r.in(regData)
	r.wantIIR(0xcc)
	r.wantIRQ(true)
	// Receive FIFO reset empties it.
	r.outb(regIIR, 0x43)
	r.wantIIR(0xc1)
	r.wantIRQ(false)
	if got := r.in(regLSR); got&lsrDR != 0 {
		t.Errorf("LSR = %#02x after FIFO reset, want DR clear", got)
	}
	// Writing FCR with bit 0 clear leaves FIFO mode and empties the FIFO.
	r.u.Receive([]byte("z"))
	r.outb(regIIR, 0xc0)
	r.wantIIR(0x01)
}

func TestTHREInterrupt(t *testing.T) {
	r := newRig(t)
	r.outb(regMCR, mcrOUT2)
	r.wantIRQ(false)
	r.outb(regIER, ierTHRE)
	r.wantIRQ(true)
	r.wantIIR(0x02)
	r.wantIRQ(false)
	r.wantIIR(0x01) // cleared by the read
	// Rewriting IER with bit 1 already set does not re-arm it.
	r.outb(regIER, ierTHRE)
	r.wantIRQ(false)
	// Writing THR empties it again at once.
	r.outb(regData, 'a')
	r.wantIRQ(true)
	r.outb(regIER, 0)
	r.wantIRQ(false)
	r.outb(regIER, ierTHRE)
	r.wantIRQ(true)
	// Dropping OUT2 lowers the line; the interrupt stays pending.
	r.outb(regMCR, 0)
	r.wantIRQ(false)
	r.wantIIR(0x02)
}

func TestPriorities(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, 0x01) // FIFO, trigger 1
	r.outb(regIER, ierRDA|ierTHRE|ierRLS|ierMS)
	r.outb(regMCR, mcrLoop) // drops CTS, DSR, DCD: modem deltas
	r.u.Receive(make([]byte, 16))
	r.outb(regData, 0) // overrun
	r.wantIIR(0xc6)
	r.in(regLSR)
	r.wantIIR(0xc4)
	for r.in(regLSR)&lsrDR != 0 {
		r.in(regData)
	}
	r.wantIIR(0xc2) // and this read clears THRE
	r.wantIIR(0xc0)
	if got := r.in(regMSR); got != msrDCTS|msrDDSR|msrDDCD {
		t.Errorf("MSR = %#02x, want DCTS|DDSR|DDCD", got)
	}
	r.wantIIR(0xc1)
}

func TestLoopback(t *testing.T) {
	r := newRig(t)
	r.outb(regIIR, 0x01)
	r.outb(regMCR, mcrLoop)
	r.in(regMSR) // clear the deltas from entering loopback
	for _, c := range []byte("hi") {
		r.outb(regData, c)
	}
	if r.out.Len() != 0 {
		t.Errorf("out = %q in loopback, want nothing", r.out.String())
	}
	for _, want := range []byte("hi") {
		if got := r.in(regData); got != want {
			t.Errorf("RBR = %q, want %q", got, want)
		}
	}
	// Linux's autoconfig check: MCR = LOOP|OUT2|RTS must read MSR 0x90.
	r.outb(regMCR, mcrLoop|mcrOUT2|mcrRTS)
	if got := r.in(regMSR) & 0xf0; got != 0x90 {
		t.Errorf("MSR lines = %#02x, want 0x90", got)
	}
	r.outb(regMCR, mcrLoop|0x0f)
	if got := r.in(regMSR); got != 0xf0|msrDDSR {
		t.Errorf("MSR = %#02x, want 0xf0|DDSR", got)
	}
	r.outb(regMCR, mcrLoop)
	if got := r.in(regMSR); got != msrDCTS|msrDDSR|msrTERI|msrDDCD {
		t.Errorf("MSR = %#02x, want all four deltas", got)
	}
	r.outb(regMCR, mcrLoop|mcrOUT1) // RI rising: no TERI
	if got := r.in(regMSR); got != msrRI {
		t.Errorf("MSR = %#02x, want RI only", got)
	}
	// Modem status interrupt, gated by OUT2 (which is also DCD here).
	r.outb(regIER, ierMS)
	r.outb(regMCR, mcrLoop|mcrOUT2)
	r.wantIRQ(true)
	r.wantIIR(0xc0)
	r.in(regMSR)
	r.wantIRQ(false)
	// Leaving loopback sends to out again.
	r.outb(regMCR, 0)
	r.outb(regData, '!')
	if got := r.out.String(); got != "!" {
		t.Errorf("out = %q, want %q", got, "!")
	}
	if got := r.in(regMSR); got != 0xb0|msrDCTS|msrDDSR {
		t.Errorf("MSR = %#02x after leaving loopback", got)
	}
}

func TestScratch(t *testing.T) {
	r := newRig(t)
	for _, v := range []uint8{0x55, 0xaa, 0x00, 0xff} {
		r.outb(regSCR, v)
		if got := r.in(regSCR); got != v {
			t.Errorf("SCR = %#02x, want %#02x", got, v)
		}
	}
}

func TestDivisorLatch(t *testing.T) {
	r := newRig(t)
	r.outb(regIER, 0x05)
	r.outb(regLCR, 0x80|0x1b)
	r.outb(regData, 0x34)
	r.outb(regIER, 0x12)
	if got := r.in(regData); got != 0x34 {
		t.Errorf("DLL = %#02x, want 0x34", got)
	}
	if got := r.in(regIER); got != 0x12 {
		t.Errorf("DLM = %#02x, want 0x12", got)
	}
	if got := r.in(regLCR); got != 0x9b {
		t.Errorf("LCR = %#02x, want 0x9b", got)
	}
	r.outb(regLCR, 0x1b)
	if got := r.in(regIER); got != 0x05 {
		t.Errorf("IER = %#02x after DLAB round trip, want 0x05", got)
	}
	if r.out.Len() != 0 {
		t.Errorf("DLL write reached out: %q", r.out.String())
	}
	r.outb(regLCR, 0x9b)
	if got := r.in(regData); got != 0x34 {
		t.Errorf("DLL = %#02x after clearing and setting DLAB, want 0x34", got)
	}
}

func TestWideAccess(t *testing.T) {
	r := newRig(t)
	r.u.Write(regLCR, []byte{0x03, mcrDTR | mcrOUT2}) // LCR, MCR
	if got := r.in(regMCR); got != mcrDTR|mcrOUT2 {
		t.Errorf("MCR = %#02x after a 2-byte write at LCR", got)
	}
	r.u.Write(regSCR, []byte{0x42, 1, 2, 3}) // past offset 7 dropped
	b := make([]byte, 4)
	r.u.Read(regMSR, b)
	if want := []byte{0xb0, 0x42, 0xff, 0xff}; !bytes.Equal(b, want) {
		t.Errorf("4-byte read at MSR = % x, want % x", b, want)
	}
	r.u.Read(100, b)
	r.u.Write(^uint64(0), b)
	if want := []byte{0xff, 0xff, 0xff, 0xff}; !bytes.Equal(b, want) {
		t.Errorf("read at offset 100 = % x", b)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestNilAndFailingSinks(t *testing.T) {
	u := New(nil, nil)
	u.Write(regMCR, []byte{mcrOUT2})
	u.Write(regIER, []byte{ierTHRE})
	u.Write(regData, []byte{'a'})
	if s := u.Stats(); s.Transmitted != 1 || s.OutputErrors != 0 {
		t.Errorf("Stats = %+v", s)
	}
	u = New(failingWriter{}, nil)
	u.Write(regData, []byte{'a'})
	u.Write(regData, []byte{'b'})
	if s := u.Stats(); s.OutputErrors != 2 {
		t.Errorf("Stats = %+v, want 2 output errors", s)
	}
}

// TestConcurrent runs a console goroutine against a guest polling the
// UART; under -race it checks the locking, and the rig checks that irq is
// only ever called on level changes.
func TestConcurrent(t *testing.T) {
	r := newRig(t)
	var out syncBuffer
	r.u.out = &out
	r.outb(regIIR, 0x81)
	r.outb(regMCR, mcrOUT2)
	r.outb(regIER, ierRDA|ierRLS)
	const total = 5000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sent := 0
		for sent < total {
			sent += r.u.Receive([]byte{byte(sent)})
		}
	}()
	got := 0
	for got < total {
		lsr := r.in(regLSR)
		if lsr&lsrOE != 0 {
			t.Fatal("overrun from Receive")
		}
		if lsr&lsrDR != 0 {
			if c := r.in(regData); c != byte(got) {
				t.Fatalf("byte %d = %d", got, c)
			}
			got++
			r.outb(regData, 'x')
		}
	}
	wg.Wait()
	if out.Len() != total {
		t.Errorf("out got %d bytes, want %d", out.Len(), total)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

// FuzzUART drives the UART with a byte string read as a sequence of
// accesses. Each access is an op byte, an offset byte and, for writes,
// the data: op%4 is 0 read, 1 write, 2 write (again, so writes are common),
// 3 Receive; (op>>2)%4+1 is the access size, or for Receive (op>>2)%20 the
// number of bytes. After every access it checks that the interrupt level
// last reported equals one re-derived from the register state, and at the
// end that out holds exactly the bytes written to THR with DLAB clear and
// loopback off.
func FuzzUART(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzUART.
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		var level, called bool
		u := New(&out, func(l bool) {
			if called && l == level {
				t.Fatalf("irq(%v) without a level change", l)
			}
			if !called && !l {
				t.Fatal("first irq call lowers a line that was never raised")
			}
			level, called = l, true
		})
		var want []byte
		var lcr, mcr uint8 // shadows of what the fuzzer wrote
		for len(data) >= 2 {
			op, off := data[0], uint64(data[1]%10)
			data = data[2:]
			switch op % 4 {
			case 0:
				buf := make([]byte, (op>>2)%4+1)
				u.Read(off, buf)
			case 1, 2:
				n := min(int((op>>2)%4+1), len(data))
				buf := data[:n]
				data = data[n:]
				for i, v := range buf {
					switch off + uint64(i) {
					case regData:
						if lcr&lcrDLAB == 0 && mcr&mcrLoop == 0 {
							want = append(want, v)
						}
					case regLCR:
						lcr = v
					case regMCR:
						mcr = v
					}
				}
				u.Write(off, buf)
			case 3:
				n := min(int((op>>2)%20), len(data))
				u.Receive(data[:n])
				data = data[n:]
			}
			if got, exp := level, derivedLevel(u); got != exp {
				t.Fatalf("irq level %v, state says %v", got, exp)
			}
			checkInvariants(t, u)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("out = %q, want %q", out.Bytes(), want)
		}
	})
}

// derivedLevel works out the interrupt line from the register state on
// its own terms: some enabled source is active and OUT2 is set. (With
// FIFO timeout simplified, RDA and timeout together mean "data present".)
func derivedLevel(u *UART) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	pending := u.ier&ierRLS != 0 && u.oe ||
		u.ier&ierRDA != 0 && u.rxCount > 0 ||
		u.ier&ierTHRE != 0 && u.threPending ||
		u.ier&ierMS != 0 && u.deltas != 0
	return pending && u.mcr&mcrOUT2 != 0
}

func checkInvariants(t *testing.T, u *UART) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.rxCount < 0 || u.rxCount > u.capacityLocked() {
		t.Fatalf("rxCount %d with capacity %d", u.rxCount, u.capacityLocked())
	}
	if u.ier&^ierMask != 0 || u.mcr&^mcrMask != 0 || u.deltas&^msrDelta != 0 {
		t.Fatalf("reserved bits set: IER %#02x MCR %#02x deltas %#02x", u.ier, u.mcr, u.deltas)
	}
}
