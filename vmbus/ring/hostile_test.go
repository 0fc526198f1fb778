package ring_test

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/partita-hv/partita/vmbus/echo"
	"github.com/partita-hv/partita/vmbus/packet"
	"github.com/partita-hv/partita/vmbus/ring"
)

// TestInPlaceReaderUnderScribbling reads packets in place while a hostile
// peer keeps rewriting bytes under the reader: descriptors, headers and
// payloads, including after Next has checked them. The reader parses each
// packet as a device does (packet.Parse, then the echo stream header and
// CRC) and must never panic or hand out more than its limit; bad packets
// are errors, and a broken framing ends the round, as a device fails its
// channel. The memory is an anonymous mapping, like guest memory, so the
// deliberate race is with a peer outside the Go heap.
func TestInPlaceReaderUnderScribbling(t *testing.T) {
	var read, bad, rounds int
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) || rounds < 3; rounds++ {
		r, b := scribbledRound(t, uint64(rounds))
		read += r
		bad += b
	}
	t.Logf("%d rounds: %d packets read in place, %d of them rejected", rounds, read, bad)
	if read < 1000 {
		t.Fatalf("only %d packets read in %d rounds", read, rounds)
	}
}

// scribbledRound runs one ring until the scribbler breaks its framing or
// 100 ms pass, and returns the packets read and those rejected.
func scribbledRound(t *testing.T, seed uint64) (read, bad int) {
	const pages = 9
	mem, err := syscall.Mmap(-1, 0, pages*ring.PageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	if err := ring.InitHeader(mem); err != nil {
		t.Fatal(err)
	}
	w, err := ring.NewWriter(mem)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ring.NewReader(mem)
	if err != nil {
		t.Fatal(err)
	}
	data := mem[ring.HeaderSize:]

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Add(2)
	go func() { // an honest writer...
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 1))
		payload := make([]byte, 2048)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		for seq := uint64(0); ; {
			select {
			case <-stop:
				return
			default:
			}
			n := echo.HeaderSize + rng.IntN(len(payload)-echo.HeaderSize)
			binary.LittleEndian.PutUint64(payload, seq)
			binary.LittleEndian.PutUint32(payload[8:], crc32.ChecksumIEEE(payload[echo.HeaderSize:n]))
			binary.LittleEndian.PutUint32(payload[12:], uint32(n-echo.HeaderSize))
			if err := w.Append(packet.TypeDataInband, 0, seq, nil, payload[:n]); err == nil {
				seq++
			}
			w.Publish()
		}
	}()
	go func() { // ...and a hostile one rewriting a few words at a time
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
			for i := 0; i < 4; i++ {
				off := rng.IntN(len(data)-8) &^ 7
				binary.LittleEndian.PutUint64(data[off:], rng.Uint64())
			}
		}
	}()

	const limit = 4096
	var p packet.Packet
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
		b, err := r.Next(limit)
		if errors.Is(err, ring.ErrEmpty) {
			r.Commit()
			continue
		}
		if errors.Is(err, ring.ErrCorrupt) || errors.Is(err, ring.ErrShortBuffer) {
			return read, bad
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(b) > limit || len(b) < packet.DescriptorSize {
			t.Fatalf("Next returned %d bytes, limit %d", len(b), limit)
		}
		read++
		if err := packet.Parse(b, &p); err != nil {
			bad++
		} else if _, err := echo.CheckPayload(p.Payload, p.TransID, p.TransID); err != nil {
			bad++
		}
		if read%8 == 0 {
			r.Commit()
		}
	}
	return read, bad
}
