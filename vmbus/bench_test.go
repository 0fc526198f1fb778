package vmbus_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/vmbus/echo"
)

// BenchmarkCrossProcess streams b.N packets of each payload size from a
// guest process (this binary re-executed) to the echo device in this
// process: shared memfd rings, eventfd doorbells, the real server and
// client; the payload includes the 16-byte stream header. Timing starts when the first packet arrives, so process start and
// channel set-up are excluded. It reports payload bytes/s, packets/s and
// signals per packet in both directions. Compare with BenchmarkCopy and
// BenchmarkCrossCoreCopy in vmbus/ring.
func BenchmarkCrossProcess(b *testing.B) {
	for _, size := range []int{64, 1024, 16384} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			p := newPartition(b)
			dev, _ := p.offerEcho(b, 1)
			// Sequence numbers and lengths are checked, CRCs are not: this
			// measures the transport (TestCrossProcessMillionPackets checks
			// the data).
			dev.SkipDataCheck = true
			cmd := guestProcess(b, p, "bench", b.N, size-echo.HeaderSize)
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			for {
				if n, _, _ := dev.Stats(); n > 0 {
					break
				}
				time.Sleep(20 * time.Microsecond)
			}
			start := time.Now()
			b.StartTimer()
			for {
				if n, _, _ := dev.Stats(); n >= uint64(b.N) {
					break
				}
				time.Sleep(50 * time.Microsecond)
			}
			b.StopTimer()
			elapsed := time.Since(start)
			guest := guestStats(b, out)
			if err := cmd.Wait(); err != nil {
				b.Fatal(err)
			}
			_, _, faults := dev.Stats()
			if faults != 0 {
				b.Fatalf("%d faults", faults)
			}
			host := dev.EndpointStats()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pkts/s")
			b.ReportMetric(float64(host.SignalsSent+guest.SignalsSent)/float64(b.N), "signals/pkt")
		})
	}
}

type endpointStats struct{ SignalsSent uint64 }

// guestStats reads the "stats {json}" line the guest process prints.
func guestStats(b *testing.B, out interface{ Read([]byte) (int, error) }) endpointStats {
	var st endpointStats
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "stats "); ok {
			if err := json.Unmarshal([]byte(line), &st); err != nil {
				b.Fatal(err)
			}
		}
	}
	return st
}
