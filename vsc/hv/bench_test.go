package hv_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testplatform"
	"github.com/partita-hv/partita/partition/gen2"
)

// BenchmarkVMBusStream streams packets from a Go program inside a
// Generation 2 partition to the echo device on the root's side, with no
// completions (a streaming channel at saturation), and reports per
// packet the program's traps to the worker (system calls, hypercalls,
// page faults, doorbells: on ptrace each is a stop of the program; on
// KVM a doorbell is an exit taken in the kernel, ~3 µs, and not counted
// with the others) and its doorbells.
//
//	go test -run '^$' -bench VMBusStream -benchtime 3x ./vsc/hv
func BenchmarkVMBusStream(b *testing.B) {
	testplatform.Gen2(b)
	prog := buildGuest(b, "echoguest")
	for _, c := range []struct {
		size  int
		extra []string
	}{{64, nil}, {1024, nil}, {1024, []string{"pages", "128"}}, {1024, []string{"spin", "50us"}}, {64, []string{"pages", "128", "spin", "50us"}}, {1024, []string{"pages", "128", "spin", "50us"}}} {
		size := c.size
		b.Run(fmt.Sprintf("%dB%s", size, strings.Join(c.extra, "-")), func(b *testing.B) {
			const count = 200000
			var exits, signals, packets float64
			var secs float64
			for i := 0; i < b.N; i++ {
				r := newRootSide(b)
				var out strings.Builder
				p, err := gen2.New(gen2.Config{Name: "stream", Program: prog, Args: append([]string{fmt.Sprint(count), "fixed", fmt.Sprint(size)}, c.extra...),
					Memory: memSize, Console: &out, GuestMemory: r.Map(b), VMBus: r.GuestConn})
				if err != nil {
					b.Fatal(err)
				}
				before := traps(p.Exits())
				exit := p.Run()
				after := traps(p.Exits())
				b.Logf("exits %v; system calls by number %v", p.Exits(), p.SyscallCounts())
				p.Close()
				if !exit.Clean || exit.Code != 0 {
					b.Fatalf("exit %+v; console %s", exit, out.String())
				}
				var n, sig, wake, blocked, sint int
				var el string
				line := out.String()[strings.Index(out.String(), "echo ok:"):]
				if _, err := fmt.Sscanf(line, "echo ok: %d packets in %s signals %d, wakeups %d, send blocked %d; sint wakeups %d", &n, &el, &sig, &wake, &blocked, &sint); err != nil {
					b.Fatalf("%v: %q", err, line)
				}
				elapsed, err := timeDuration(strings.TrimSuffix(el, ";"))
				if err != nil {
					b.Fatal(err)
				}
				exits += float64(after - before)
				signals += float64(sig)
				packets += float64(n)
				secs += elapsed
			}
			b.ReportMetric(exits/packets, "traps/packet")
			b.ReportMetric(signals/packets, "doorbells/packet")
			b.ReportMetric(packets/secs, "packets/s")
			b.ReportMetric(packets*float64(size)/secs/1e6, "MB/s")
		})
	}
}

// traps sums a partition's exits that stopped the program: all but the
// calls the ptrace platform injects into its stub itself (it maps pages
// there, a part of serving page faults).
func traps(m map[string]uint64) uint64 {
	var n uint64
	for k, v := range m {
		if k != "injected_call" {
			n += v
		}
	}
	return n
}

func timeDuration(s string) (float64, error) {
	d, err := time.ParseDuration(s)
	return d.Seconds(), err
}
