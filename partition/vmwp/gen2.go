package vmwp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/control"
	"github.com/partita-hv/partita/partition/gen1"
	"github.com/partita-hv/partita/partition/gen2"
	"github.com/partita-hv/partita/partition/platform"
)

// running is what the controlled worker does with a partition of either
// generation.
type running interface {
	Pause() error
	Resume() error
	PowerButton() error
	Stop(gen1.StopReason)
	Wait() gen1.StopReason
	Close() error
	ConsoleInput(io.Reader) error
	Stats() *control.Stats
}

// gen1Partition is a Generation 1 partition under control.
type gen1Partition struct{ *gen1.Partition }

func (g gen1Partition) Stats() *control.Stats {
	exits := make(map[string]uint64)
	for r, n := range g.Exits() {
		exits[r.String()] += n
	}
	pio := g.PIOStats()
	return &control.Stats{Exits: exits, UnmappedIO: pio.UnhandledReads + pio.UnhandledWrites, Paused: g.Paused()}
}

// errGen2 answers what a Generation 2 partition cannot do yet.
var errGen2 = errors.New("not supported for Generation 2 partitions yet")

// gen2Partition is a Generation 2 partition under control: its program
// runs on one vCPU thread.
type gen2Partition struct {
	p    *gen2.Partition
	log  hclog.Logger
	done chan struct{}
	exit gen2.Exit

	mu     sync.Mutex
	reason *gen1.StopReason // set by Stop
}

func startGen2(st *control.Start, mem *guestmem.Memory, bus *os.File, pl platform.Platform, log hclog.Logger) (*gen2Partition, error) {
	p, err := gen2.New(gen2.Config{Name: st.Name, Program: st.Program, Memory: st.MemoryBytes, Processors: st.Processors, Console: os.Stdout, ConsoleIn: os.Stdin,
		Logger: log, GuestMemory: mem, VMBus: bus, Platform: pl})
	if err != nil {
		return nil, err
	}
	g := &gen2Partition{p: p, log: log, done: make(chan struct{})}
	go func() {
		g.exit = g.p.Run()
		close(g.done)
	}()
	return g, nil
}

func (g *gen2Partition) Pause() error  { g.p.Pause(); return nil }
func (g *gen2Partition) Resume() error { g.p.Resume(); return nil }
func (g *gen2Partition) PowerButton() error {
	return fmt.Errorf("shut down: %w (no shutdown integration service)", errGen2)
}

func (g *gen2Partition) Stop(r gen1.StopReason) {
	g.mu.Lock()
	if g.reason == nil {
		g.reason = &r
	}
	g.mu.Unlock()
	g.p.Stop(r.Message)
}

// Wait returns why the program ended: its exit (a clean exit is the
// partition powering off) or its fault, whose report goes to the log.
func (g *gen2Partition) Wait() gen1.StopReason {
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reason != nil {
		return *g.reason
	}
	if g.exit.Report != "" {
		g.log.Error("program fault", "message", g.exit.Message, "report", g.exit.Report)
	}
	return gen1.StopReason{PowerOff: g.exit.Clean, Message: g.exit.Message}
}

func (g *gen2Partition) Close() error { return g.p.Close() }

// ConsoleInput: the program reads the worker's standard input itself
// (gen2.Config.ConsoleIn); nothing to feed here.
func (g *gen2Partition) ConsoleInput(io.Reader) error { return nil }

func (g *gen2Partition) Stats() *control.Stats {
	unserved := map[string]uint64{}
	for nr, n := range g.p.ENOSYSCounts() {
		key := strconv.FormatUint(nr, 10)
		if nr >= 512 {
			key = "other"
		}
		unserved[key] = n
	}
	return &control.Stats{Exits: g.p.Exits(), Unserved: unserved, Paused: g.p.Paused()}
}
