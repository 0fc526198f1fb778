package ring

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/partita-hv/partita/vmbus/packet"
)

var benchSizes = []int{64, 1024, 16384}

// BenchmarkCopy is the physical reference for the ring benchmarks: one
// plain copy of the same size. bytes/s here is the copy bandwidth.
func BenchmarkCopy(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			src, dst := make([]byte, size), make([]byte, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}

// BenchmarkCrossCoreCopy is the second reference: the bare cost of moving
// blocks of each size from one goroutine to another through a 256 KiB
// buffer, synchronised by two atomic counters and nothing else. With two
// cores this is the physical limit any shared-memory ring between two
// threads or processes runs into.
func BenchmarkCrossCoreCopy(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			shared := make([]byte, 256<<10)
			slots := len(shared) / size
			src, dst := make([]byte, size), make([]byte, size)
			var head, tail atomic.Uint64
			b.SetBytes(int64(size))
			b.ResetTimer()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < b.N; i++ {
					for head.Load()-tail.Load() >= uint64(slots) {
						runtime.Gosched()
					}
					off := (i % slots) * size
					copy(shared[off:off+size], src)
					head.Add(1)
				}
			}()
			for i := 0; i < b.N; i++ {
				for tail.Load() == head.Load() {
					runtime.Gosched()
				}
				off := (i % slots) * size
				copy(dst, shared[off:off+size])
				tail.Add(1)
			}
			<-done
		})
	}
}

// BenchmarkRing moves packets of each size from a producer goroutine to a
// consumer over a 256 KiB ring with the real signalling rules, and reports
// bytes/s of payload, packets/s and signals per packet (both directions).
// Each packet is copied in by the writer and out by the reader.
func BenchmarkRing(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			a, c := NewEndpointPair(b, 64, EndpointConfig{Spin: 50 * time.Microsecond})
			benchStream(b, a, c, size)
		})
	}
}

// benchStream sends b.N packets of size payload bytes from tx to rx.
func benchStream(b *testing.B, tx, rx *Endpoint, size int) {
	payload := make([]byte, size)
	buf := make([]byte, size+64)
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < b.N; i++ {
			if err := tx.Send(packet.TypeDataInband, 0, uint64(i), nil, payload); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < b.N; i++ {
		if _, err := rx.Recv(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	ts, rs := tx.Stats(), rx.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(ts.SignalsSent+rs.SignalsSent)/float64(b.N), "signals/pkt")
}
