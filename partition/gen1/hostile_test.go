package gen1

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/partition/platform"
)

// TestHostileGuestsStopPromptly: a guest that spins with interrupts off,
// one that floods a port and one that sets the PIT to its fastest rate
// and takes every tick are all turned off within 100 ms of Stop, on
// whichever platform runs Generation 1 here.
func TestHostileGuestsStopPromptly(t *testing.T) {
	requireKVM(t)
	for _, tc := range []struct {
		rom string
		// busy reports whether the guest is doing what it is built to
		// do, and how much of it.
		busy func(p *Partition, out string) (bool, string)
	}{
		{"spin", func(p *Partition, out string) (bool, string) { return out == "", "no output" }},
		{"outloop", func(p *Partition, out string) (bool, string) {
			n := p.Exits()[platform.ExitPortIO]
			return n > 1000, fmt.Sprintf("%d port writes", n)
		}},
		{"pitfast", func(p *Partition, out string) (bool, string) {
			n := strings.Count(out, ".")
			return n > 50, fmt.Sprintf("%d timer interrupts", n)
		}},
	} {
		t.Run(tc.rom, func(t *testing.T) {
			var out syncBuffer
			p, err := New(Config{Name: t.Name(), Firmware: buildROM(t, tc.rom), Memory: 16 << 20, Processors: 1, Serial: &out})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			p.Start()
			time.Sleep(300 * time.Millisecond)
			ok, what := tc.busy(p, out.String())
			if !ok {
				t.Errorf("after 300 ms: %s", what)
			}
			asked := time.Now()
			p.Stop(StopReason{Message: "turned off"})
			done := make(chan StopReason, 1)
			go func() { done <- p.Wait() }()
			select {
			case r := <-done:
				took := time.Since(asked)
				t.Logf("%s in 300 ms; off %v after Stop (%s)", what, took.Round(10*time.Microsecond), r.Message)
				if took > 100*time.Millisecond {
					t.Errorf("off %v after Stop, want at most 100 ms", took)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("still running 5 s after Stop")
			}
		})
	}
}
