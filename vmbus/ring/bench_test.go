package ring

import (
	"encoding/binary"
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

// BenchmarkCopyIntoRing is the physical reference for a writer: the same
// copy of each size, into memory laid out as a 64-page ring's data area, at
// the offsets where Write puts payloads (16 bytes into each packet, packets
// Need(0, size) apart, wrapping at the end). It is the copy a ring writer
// cannot avoid, with the ring's cache footprint and alignments and none of
// its framing, checks or shared indices.
func BenchmarkCopyIntoRing(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			mem := newMem(b, 64)
			data := mem[HeaderSize:]
			src := make([]byte, size)
			stride := int(Need(0, size))
			b.SetBytes(int64(size))
			off := 0
			for b.Loop() {
				if off+stride > len(data) {
					off = 0 // Write would wrap here; the reference does not
				}
				copy(data[off+packet.DescriptorSize:], src)
				off += stride
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

// The ways a benchmark moves packets through a ring:
//   - copy: Write publishes each packet; the reader copies it out (Read);
//   - inplace: Write publishes each packet; the reader looks at it in the
//     ring (Next);
//   - batched: the writer appends packets and publishes them in batches
//     (Append/Publish, Endpoint.Queue); the reader looks at them in place.
var benchModes = []string{"copy", "inplace", "batched"}

// BenchmarkRingOneCore writes packets until the ring is full, then reads
// them all, on one goroutine: the ring's own cost per packet (framing, index
// updates, the copy in, and for "copy" the copy out to the reader's buffer)
// without cross-core cache traffic. The reader checks each packet's sequence
// number, the first 8 bytes of its payload.
func BenchmarkRingOneCore(b *testing.B) {
	for _, mode := range benchModes {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%dB", mode, size), func(b *testing.B) {
				w, r := pair(b, newMem(b, 64))
				payload, buf := make([]byte, size), make([]byte, size+64)
				var sent, seen uint64
				read := func() error {
					var p []byte
					if mode == "copy" {
						n, err := r.Read(buf)
						if err != nil {
							return err
						}
						p = buf[:n]
					} else {
						var err error
						if p, err = r.Next(len(buf)); err != nil {
							return err
						}
					}
					if got := binary.LittleEndian.Uint64(p[packet.DescriptorSize:]); got != seen {
						b.Fatalf("packet %d carries sequence number %d", seen, got)
					}
					seen++
					return nil
				}
				b.SetBytes(int64(size))
				write := func() error {
					if mode == "batched" {
						return w.Append(packet.TypeDataInband, 0, 0, nil, payload)
					}
					_, err := w.Write(packet.TypeDataInband, 0, 0, nil, payload)
					return err
				}
				for b.Loop() {
					binary.LittleEndian.PutUint64(payload, sent)
					if write() == nil {
						sent++
						continue
					}
					w.Publish()
					for read() == nil {
					}
					r.Commit()
					if err := write(); err != nil {
						b.Fatal(err)
					}
					sent++
				}
			})
		}
	}
}

// BenchmarkRing moves packets of each size from a producer goroutine to a
// consumer over a 256 KiB ring with the real signalling rules, and reports
// bytes/s of payload, packets/s and signals per packet (both directions).
// The writer copies each packet in; the reader checks its sequence number,
// after copying the packet out or where it lies in the ring (benchModes).
func BenchmarkRing(b *testing.B) {
	for _, mode := range benchModes {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%dB", mode, size), func(b *testing.B) {
				a, c := NewEndpointPair(b, 64, EndpointConfig{Spin: 50 * time.Microsecond})
				benchStream(b, a, c, size, mode)
			})
		}
	}
}

// benchStream sends b.N packets of size payload bytes from tx to rx, each
// carrying its sequence number, which rx checks.
func benchStream(b *testing.B, tx, rx *Endpoint, size int, mode string) {
	payload := make([]byte, size)
	buf := make([]byte, size+64)
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < b.N; i++ {
			binary.LittleEndian.PutUint64(payload, uint64(i))
			send := tx.Send
			if mode == "batched" {
				send = tx.Queue
			}
			if err := send(packet.TypeDataInband, 0, uint64(i), nil, payload); err != nil {
				errc <- err
				return
			}
		}
		errc <- tx.Publish()
	}()
	for i := 0; i < b.N; i++ {
		var p []byte
		var err error
		if mode != "copy" {
			p, err = rx.Next(len(buf))
		} else {
			var n int
			n, err = rx.Recv(buf)
			p = buf[:n]
		}
		if err != nil {
			b.Fatal(err)
		}
		if got := binary.LittleEndian.Uint64(p[packet.DescriptorSize:]); got != uint64(i) {
			b.Fatalf("packet %d carries sequence number %d", i, got)
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
