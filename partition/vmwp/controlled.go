package vmwp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/control"
	"github.com/partita-hv/partita/partition/gen1"
)

// controller is the worker's side of the control socket.
type controller struct {
	conn *control.Conn
	log  hclog.Logger

	sendMu sync.Mutex // Conn.Send must not run concurrently with itself

	memoryBytes uint64 // of the running partition
	invalid     atomic.Uint64

	spare bool       // started before it had a partition: name it at start
	pl    *platforms // opened ahead, for the start request
}

// errDismissed: the root closed the control socket before sending a
// start request (a spare worker it no longer needs).
var errDismissed = errors.New("dismissed before a start request")

// request is one record from the root with the descriptors it carried.
type request struct {
	m     *control.Message
	files []*os.File
}

// runControlled is Main under the root service.
func runControlled(fd int, label, choice string, nameErr error) int {
	log := hclog.New(&hclog.LoggerOptions{Name: "vmwp", Output: os.Stderr, Level: hclog.Info, JSONFormat: true})
	if label != "" {
		log = log.With("partition", label)
	}
	if nameErr != nil {
		log.Warn("cannot label the process", "error", nameErr)
	}
	f := os.NewFile(uintptr(fd), "control")
	conn, err := control.FromFile(f)
	f.Close() // the Conn holds its own duplicate
	if err != nil {
		log.Error("no control socket", "fd", fd, "error", err)
		return exitError
	}
	defer conn.Close()
	// Standard output is the root's console pipe. If the root dies, writes
	// to it must fail with EPIPE rather than kill the process before the
	// disks are flushed.
	signal.Ignore(syscall.SIGPIPE)
	// The root stops this process over the control socket (and it stops
	// by itself when the socket closes), flushing the disks first; a ^C
	// or SIGTERM meant for the root's group must not cut that short.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	// Guest memory is sparse and a partition may be larger than the host:
	// if the host runs out, the kernel should end a worker (one
	// partition), not the root.
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("500"), 0); err != nil {
		log.Warn("cannot make the worker the OOM killer's first choice", "error", err)
	}

	// Open the platforms and make a PC while the root has nothing for
	// this worker yet (a spare) or is still sending the start request.
	c := &controller{conn: conn, log: log, spare: control.IsSpare(label), pl: openPlatforms(choice)}
	p, err := c.start()
	c.pl.close() // what the partition did not take
	if errors.Is(err, errDismissed) {
		log.Info("dismissed before a partition was given")
		return exitOK
	}
	if err != nil {
		log.Error("partition not started", "error", err)
		return exitError
	}
	return c.serve(p)
}

// start waits for the start request, builds and starts the partition, and
// replies.
func (c *controller) start() (running, error) {
	m, files, err := c.conn.Recv()
	if errors.Is(err, control.ErrClosed) {
		return nil, errDismissed
	}
	if err != nil {
		return nil, fmt.Errorf("waiting for the start request: %w", err)
	}
	fail := func(err error) (running, error) {
		if sendErr := c.reply(m.Seq, err); sendErr != nil {
			c.log.Error("cannot reply to the start request", "error", sendErr)
		}
		return nil, err
	}
	if m.Type != control.TypeStart {
		closeAll(files)
		return fail(fmt.Errorf("first request is %q, want %q", m.Type, control.TypeStart))
	}
	st := m.Start // Recv validated it: set, with the descriptors it names
	if st.Generation != 1 && st.Generation != 2 {
		closeAll(files)
		return fail(fmt.Errorf("generation %d: want 1 or 2", st.Generation))
	}
	c.log = c.log.With("name", st.Name, "id", st.ID)
	if c.spare {
		if err := nameSpare(st.Name); err != nil {
			c.log.Warn("cannot label the process", "error", err)
		}
	}
	pl, err := c.pl.get(st.Generation)
	if err != nil {
		closeAll(files)
		return fail(err)
	}
	var bus *os.File // the VMBus socket, when the root sent one
	if len(files) == 2 {
		bus = files[1]
		defer bus.Close() // the partition's relay holds its own duplicate
	}
	mem, err := guestmem.Open(files[0], st.MemoryBytes) // owns the file from here
	if err != nil {
		return fail(fmt.Errorf("guest memory: %w", err))
	}
	if st.Generation == 2 {
		g, err := startGen2(st, mem, bus, pl, c.log) // owns mem
		if err != nil {
			return fail(err)
		}
		c.pl.keep(2)
		c.memoryBytes = st.MemoryBytes
		if err := c.replyStarted(m.Seq, pl.Name()); err != nil {
			g.Stop(gen1.StopReason{Message: ReasonRootGone})
			g.Wait()
			g.Close()
			return nil, fmt.Errorf("reply to the start request: %w", err)
		}
		c.log.Info("partition started", "generation", 2, "platform", pl.Name(), "program", st.Program, "memory_bytes", st.MemoryBytes)
		return g, nil
	}
	prepared, err := c.pl.takePC(st.Processors)
	if err != nil {
		mem.Close()
		return fail(err)
	}
	p, err := gen1.New(gen1.Config{
		Name:        st.Name,
		ID:          st.ID,
		Firmware:    st.Firmware,
		Disks:       st.Disks,
		Memory:      st.MemoryBytes,
		Processors:  st.Processors,
		Serial:      os.Stdout,
		Logger:      c.log,
		GuestMemory: mem, // New owns it, even when it fails
		Prepared:    prepared,
	})
	if err != nil {
		return fail(err)
	}
	c.pl.keep(1)
	c.memoryBytes = st.MemoryBytes
	p.Start()
	if err := c.replyStarted(m.Seq, pl.Name()); err != nil {
		p.Stop(gen1.StopReason{Message: ReasonRootGone})
		p.Wait()
		p.Close()
		return nil, fmt.Errorf("reply to the start request: %w", err)
	}
	c.log.Info("partition started", "generation", 1, "platform", pl.Name(), "firmware", st.Firmware, "disks", st.Disks, "memory_bytes", st.MemoryBytes, "processors", st.Processors)
	return gen1Partition{p}, nil
}

// serve answers requests until the partition stops, then flushes and
// reports the stop. It returns the exit code.
func (c *controller) serve(p running) int {
	reqs := make(chan request)
	quit := make(chan struct{})
	rootGone := make(chan struct{})
	var receiving sync.WaitGroup
	receiving.Add(1)
	go func() {
		defer receiving.Done()
		c.receive(p, reqs, quit, rootGone)
	}()
	stopped := make(chan gen1.StopReason, 1)
	go func() { stopped <- p.Wait() }()
	// This goroutine may stay blocked reading standard input after serve
	// returns; the process exits then (see Main).
	go func() {
		if err := p.ConsoleInput(os.Stdin); err != nil {
			c.log.Warn("COM1 input ended", "error", err)
		}
	}()

	var reason gen1.StopReason
wait:
	for {
		select {
		case r := <-reqs:
			c.handle(p, r)
		case reason = <-stopped:
			break wait
		}
	}
	flushErr := p.Close()
	close(quit)
	code := exitOK
	select {
	case <-rootGone:
		c.log.Error("partition stopped without the root service to report to", "reason", reason.Message, "flush_error", flushErr)
		code = exitError
	default:
		s := &control.Stopped{PowerOff: reason.PowerOff, Reset: reason.Reset, Reason: reason.Message}
		if flushErr != nil {
			s.FlushErr = flushErr.Error()
		}
		if err := c.send(&control.Message{Type: control.TypeStopped, Stopped: s}); err != nil {
			c.log.Error("cannot report the stop", "reason", reason.Message, "error", err)
			code = exitError
		} else {
			c.log.Info("partition stopped", "power_off", reason.PowerOff, "reason", reason.Message, "flush_error", flushErr)
		}
	}
	c.conn.Close() // ends the receiving goroutine's Recv
	receiving.Wait()
	return code
}

// receive reads the control socket, handing requests to serve. When the
// socket reaches end of file or fails, the root is gone: it stops the
// partition and closes rootGone. Malformed records are counted, logged
// and skipped.
func (c *controller) receive(p running, reqs chan<- request, quit <-chan struct{}, rootGone chan<- struct{}) {
	for {
		m, files, err := c.conn.Recv()
		select {
		case <-quit: // serve is done; the socket was closed under us
			closeAll(files)
			return
		default:
		}
		var op *net.OpError
		switch {
		case errors.Is(err, control.ErrClosed), errors.As(err, &op):
			c.log.Error("control socket lost: stopping the partition", "error", err)
			p.Stop(gen1.StopReason{Message: ReasonRootGone})
			close(rootGone)
			return
		case err != nil:
			c.skip(err)
			continue
		}
		select {
		case reqs <- request{m, files}:
		case <-quit:
			closeAll(files)
			return
		}
	}
}

// handle answers one request.
func (c *controller) handle(p running, r request) {
	closeAll(r.files) // only a start request carries one
	m := r.m
	reply := &control.Message{Type: control.TypeReply, Seq: m.Seq}
	var err error
	switch m.Type {
	case control.TypePause:
		err = p.Pause()
	case control.TypeResume:
		err = p.Resume()
	case control.TypeTurnOff:
		p.Stop(gen1.StopReason{Message: ReasonTurnedOff})
	case control.TypePowerButton:
		err = p.PowerButton()
	case control.TypeStats:
		reply.Stats = c.stats(p)
	case control.TypeStart:
		err = errors.New("the partition is already started")
	default: // replies and stopped events go the other way
		c.skip(fmt.Errorf("unexpected %q record from the root service (seq %d)", m.Type, m.Seq))
		return
	}
	if err != nil {
		reply.Error = err.Error()
	}
	if err := c.send(reply); err != nil {
		// The receiving goroutine sees the socket fail too, and stops.
		c.log.Warn("cannot reply", "type", m.Type, "seq", m.Seq, "error", err)
	}
}

// stats are the counters for a stats reply.
func (c *controller) stats(p running) *control.Stats {
	s := p.Stats()
	s.MemoryBytes = c.memoryBytes
	return s
}

// skip counts a record it ignores, logging the first few and then one in
// a thousand, so a babbling peer cannot flood the log.
func (c *controller) skip(err error) {
	n := c.invalid.Add(1)
	if n <= 10 || n%1000 == 0 {
		c.log.Warn("ignored a control record", "error", err, "ignored_so_far", n)
	}
}

// replyStarted answers a start request that worked, naming the platform.
func (c *controller) replyStarted(seq uint64, platform string) error {
	return c.send(&control.Message{Type: control.TypeReply, Seq: seq, Platform: platform})
}

func (c *controller) reply(seq uint64, err error) error {
	m := &control.Message{Type: control.TypeReply, Seq: seq}
	if err != nil {
		m.Error = err.Error()
	}
	return c.send(m)
}

func (c *controller) send(m *control.Message) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.conn.Send(m)
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
