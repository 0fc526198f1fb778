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

// BenchmarkCoreToCore is the physical reference for moving bytes between
// the two cores: a producer copies blocks of each size into a 256 KiB
// buffer, a consumer copies them out, synchronised by two counters on
// separate cache lines that each side reads only when its cached copy says
// it must wait. No framing, no validation, no signalling: the least any
// shared-memory ring between two cores pays.
func BenchmarkCoreToCore(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			shared := make([]byte, 256<<10)
			slots := uint64(len(shared) / size)
			var ctl struct {
				head atomic.Uint64
				_    [56]byte
				tail atomic.Uint64
				_    [56]byte
			}
			src, dst := make([]byte, size), make([]byte, size)
			n := uint64(b.N)
			b.SetBytes(int64(size))
			b.ResetTimer()
			done := make(chan struct{})
			go func() {
				defer close(done)
				var tail uint64
				for i := uint64(0); i < n; i++ {
					for i-tail >= slots {
						if tail = ctl.tail.Load(); i-tail >= slots {
							runtime.Gosched()
						}
					}
					off := (i % slots) * uint64(size)
					copy(shared[off:off+uint64(size)], src)
					ctl.head.Store(i + 1)
				}
			}()
			var head uint64
			for i := uint64(0); i < n; i++ {
				for i >= head {
					if head = ctl.head.Load(); i >= head {
						runtime.Gosched()
					}
				}
				off := (i % slots) * uint64(size)
				copy(dst, shared[off:off+uint64(size)])
				ctl.tail.Store(i + 1)
			}
			<-done
		})
	}
}

// BenchmarkRingOneCore writes packets until the ring is full, then reads
// them all, on one goroutine: the ring's own cost per packet (two copies,
// framing, index updates) without cross-core cache traffic.
func BenchmarkRingOneCore(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			w, r := pair(b, newMem(b, 64))
			payload, buf := make([]byte, size), make([]byte, size+64)
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := w.Write(packet.TypeDataInband, 0, 0, nil, payload); err == nil {
					continue
				}
				for {
					if _, err := r.Read(buf); err != nil {
						break
					}
				}
				r.Commit()
				if _, err := w.Write(packet.TypeDataInband, 0, 0, nil, payload); err != nil {
					b.Fatal(err)
				}
			}
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
