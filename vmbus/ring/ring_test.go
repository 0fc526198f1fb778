package ring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/partita-hv/partita/vmbus/packet"
)

// newMem returns fresh ring memory of the given number of pages, initialised
// as a guest would.
func newMem(t testing.TB, pages int) []byte {
	t.Helper()
	mem := make([]byte, pages*PageSize)
	if err := InitHeader(mem); err != nil {
		t.Fatal(err)
	}
	return mem
}

func pair(t testing.TB, mem []byte) (*Writer, *Reader) {
	t.Helper()
	w, err := NewWriter(mem)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(mem)
	if err != nil {
		t.Fatal(err)
	}
	return w, r
}

func TestWriteReadFraming(t *testing.T) {
	mem := newMem(t, 2)
	w, r := pair(t, mem)
	payload := []byte("hello, vmbus") // 12 bytes: padded to 16
	sig, err := w.Write(packet.TypeDataInband, packet.FlagCompletionRequested, 42, nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	if !sig {
		t.Error("first write into an empty, unmasked ring must signal")
	}
	// On the wire: descriptor, payload, 4 zero bytes, trailer = 0 << 32.
	d, err := packet.ParseDescriptor(mem[HeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != packet.TypeDataInband || d.Offset8 != 2 || d.Len8 != 4 || d.Flags != 1 || d.TransID != 42 {
		t.Errorf("descriptor %+v", d)
	}
	if got := binary.LittleEndian.Uint32(mem[offWriteIndex:]); got != 40 {
		t.Errorf("write_index %d, want 40 (32 packet + 8 trailer)", got)
	}
	if !bytes.Equal(mem[HeaderSize+16:HeaderSize+28], payload) || !bytes.Equal(mem[HeaderSize+28:HeaderSize+32], make([]byte, 4)) {
		t.Error("payload or padding wrong")
	}
	if got := binary.LittleEndian.Uint64(mem[HeaderSize+32:]); got != 0 {
		t.Errorf("trailer %#x, want start offset 0 << 32", got)
	}
	// Second packet's trailer names its own start.
	if _, err := w.Write(packet.TypeCompletion, 0, 42, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint64(mem[HeaderSize+40+16:]); got != 40<<32 {
		t.Errorf("second trailer %#x, want 40<<32", got)
	}

	buf := make([]byte, 64)
	n, err := r.Read(buf)
	if err != nil || n != 32 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	var p packet.Packet
	if err := packet.Parse(buf[:n], &p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Payload[:12], payload) || !p.CompletionRequested() {
		t.Errorf("parsed %+v", p)
	}
	if n, err = r.Read(buf); err != nil || n != 16 {
		t.Fatalf("second Read = %d, %v", n, err)
	}
	if _, err := r.Read(buf); !errors.Is(err, ErrEmpty) {
		t.Fatalf("third Read: %v, want ErrEmpty", err)
	}
	if got := binary.LittleEndian.Uint32(mem[offReadIndex:]); got != 0 {
		t.Errorf("read_index published before Commit: %d", got)
	}
	r.Commit()
	if got := binary.LittleEndian.Uint32(mem[offReadIndex:]); got != 64 {
		t.Errorf("read_index after Commit %d, want 64", got)
	}
}

func TestFullRuleAndLargestPacket(t *testing.T) {
	mem := newMem(t, 2) // 4096 data bytes
	w, r := pair(t, mem)
	if got := w.MaxPacket(); got != 4096-16 {
		t.Fatalf("MaxPacket %d", got)
	}
	// Largest packet: total with trailer = D - 8.
	if _, err := w.Write(packet.TypeDataInband, 0, 1, nil, make([]byte, w.MaxPacket()-16)); err != nil {
		t.Fatalf("largest packet: %v", err)
	}
	if _, err := w.Write(packet.TypeDataInband, 0, 2, nil, nil); !errors.Is(err, ErrFull) {
		t.Fatalf("write into full ring: %v", err)
	}
	buf := make([]byte, 4096)
	if n, err := r.Read(buf); err != nil || n != w.MaxPacket() {
		t.Fatalf("Read = %d, %v", n, err)
	}
	r.Commit()
	if _, err := w.Write(packet.TypeDataInband, 0, 3, nil, make([]byte, w.MaxPacket()-16+8)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized packet: %v", err)
	}
}

func TestShortBufferLeavesPacket(t *testing.T) {
	w, r := pair(t, newMem(t, 2))
	if _, err := w.Write(packet.TypeDataInband, 0, 7, nil, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 50)); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("got %v", err)
	}
	if n, err := r.Read(make([]byte, 200)); err != nil || n != 120 {
		t.Fatalf("retry Read = %d, %v", n, err)
	}
}

func TestSignalSuppression(t *testing.T) {
	mem := newMem(t, 2)
	w, r := pair(t, mem)
	buf := make([]byte, 4096)
	write := func() bool {
		t.Helper()
		sig, err := w.Write(packet.TypeDataInband, 0, 0, nil, make([]byte, 8))
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	if !write() {
		t.Error("empty -> non-empty must signal")
	}
	if write() {
		t.Error("non-empty -> non-empty must not signal")
	}
	r.Read(buf)
	r.Read(buf)
	r.Commit()
	r.SetInterruptMask(true)
	if write() {
		t.Error("masked reader must not be signalled")
	}
	r.Read(buf)
	r.Commit()
	r.SetInterruptMask(false)
	if !write() {
		t.Error("unmasked, empty again: must signal")
	}
	// A reader that has read but not committed still looks non-empty to
	// the writer: no signal, and none is needed because it will re-check.
	r.Read(buf)
	if write() {
		t.Error("uncommitted reader: must not signal")
	}
}

func TestPendingSendSignal(t *testing.T) {
	mem := newMem(t, 2)
	w, r := pair(t, mem)
	buf := make([]byte, 4096)
	// Fill with 8 packets of 512 bytes on the ring (496 + 16 desc; +8 trailer
	// = 520): 7 fit (3640 bytes), the 8th does not.
	n := 0
	for ; ; n++ {
		_, err := w.Write(packet.TypeDataInband, 0, 0, nil, make([]byte, 496))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n != 7 {
		t.Fatalf("%d packets fit, want 7", n)
	}
	need := Need(0, 496)
	// Without pending_send_sz the reader never signals.
	r.Read(buf)
	if r.Commit() {
		t.Error("signal without pending_send_sz")
	}
	// Now free space is 4096-6*520 = 976 > 520: a writer would not be blocked.
	w.SetPendingSend(need)
	r.Read(buf)
	if r.Commit() {
		t.Error("writer was not blocked (space already sufficient): no signal")
	}
	// Refill until blocked, then free exactly across the threshold.
	for {
		_, err := w.Write(packet.TypeDataInband, 0, 0, nil, make([]byte, 496))
		if errors.Is(err, ErrFull) {
			break
		}
	}
	w.SetPendingSend(need)
	r.Read(buf)
	if !r.Commit() {
		t.Error("freeing across pending_send_sz must signal")
	}
	// Feature bit clear: never signal.
	binary.LittleEndian.PutUint32(mem[offFeatureBits:], 0)
	for {
		if _, err := w.Write(packet.TypeDataInband, 0, 0, nil, make([]byte, 496)); errors.Is(err, ErrFull) {
			break
		}
	}
	r.Read(buf)
	if r.Commit() {
		t.Error("feature bit clear: must not signal")
	}
}

func TestCorruptIndices(t *testing.T) {
	cases := []struct {
		name  string
		setup func(mem []byte)
	}{
		{"write index unaligned", func(m []byte) { binary.LittleEndian.PutUint32(m[offWriteIndex:], 12) }},
		{"write index beyond data", func(m []byte) { binary.LittleEndian.PutUint32(m[offWriteIndex:], 8192) }},
		{"descriptor offset8 < 2", func(m []byte) {
			(packet.Descriptor{Type: packet.TypeDataInband, Offset8: 1, Len8: 2}).Put(m[HeaderSize:])
			binary.LittleEndian.PutUint32(m[offWriteIndex:], 24)
		}},
		{"descriptor longer than published", func(m []byte) {
			(packet.Descriptor{Type: packet.TypeDataInband, Offset8: 2, Len8: 100}).Put(m[HeaderSize:])
			binary.LittleEndian.PutUint32(m[offWriteIndex:], 24)
		}},
		{"less than a packet published", func(m []byte) { binary.LittleEndian.PutUint32(m[offWriteIndex:], 8) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := newMem(t, 2)
			r, err := NewReader(mem)
			if err != nil {
				t.Fatal(err)
			}
			c.setup(mem)
			if _, err := r.Read(make([]byte, 8192)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
	// Attaching to a ring whose header is already corrupt fails cleanly.
	mem := newMem(t, 2)
	binary.LittleEndian.PutUint32(mem[offReadIndex:], 4)
	if _, err := NewReader(mem); !errors.Is(err, ErrCorrupt) {
		t.Errorf("NewReader: %v", err)
	}
	if _, err := NewWriter(mem); !errors.Is(err, ErrCorrupt) {
		t.Errorf("NewWriter: %v", err)
	}
	// A hostile read index makes the writer fail instead of writing.
	mem = newMem(t, 2)
	w, _ := pair(t, mem)
	for {
		if _, err := w.Write(packet.TypeDataInband, 0, 0, nil, make([]byte, 1000)); err != nil {
			break
		}
	}
	binary.LittleEndian.PutUint32(mem[offReadIndex:], 0xFFFF_FFF8)
	if _, err := w.Write(packet.TypeDataInband, 0, 0, nil, make([]byte, 1000)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("writer with hostile read index: %v", err)
	}
	for _, bad := range [][]byte{make([]byte, 4096), make([]byte, 3*4096+8), make([]byte, 12288)[4:]} {
		if _, err := NewReader(bad); !errors.Is(err, ErrBadLayout) {
			t.Errorf("layout %d bytes: %v", len(bad), err)
		}
	}
}

// TestRandomAgainstModel drives a small ring with random packet sizes,
// random batch lengths and random commit points, checking every byte and
// every full/empty decision against a plain queue, across thousands of
// wrap-arounds.
func TestRandomAgainstModel(t *testing.T) {
	for _, pages := range []int{2, 3, 5} {
		mem := newMem(t, pages)
		w, r := pair(t, mem)
		rng := rand.New(rand.NewPCG(uint64(pages), 99))
		dataSize := uint32((pages - 1) * PageSize)

		type pkt struct {
			id      uint64
			payload []byte
		}
		var queue []pkt // written, not yet read
		var queued, uncommitted uint32
		var nextID uint64
		var wrapped, total uint64
		buf := make([]byte, dataSize)
		for wrapped < 3000 {
			if rng.IntN(2) == 0 {
				// A burst of writes.
				for k := rng.IntN(8); k >= 0; k-- {
					size := rng.IntN(int(dataSize) / 3)
					if rng.IntN(4) == 0 {
						size = rng.IntN(24)
					}
					payload := make([]byte, size)
					for i := range payload {
						payload[i] = byte(rng.Uint32())
					}
					need := Need(0, size)
					// Writer's view of used space: what is queued plus what
					// was read but not yet committed.
					free := dataSize - queued - uncommitted
					_, err := w.Write(packet.TypeDataInband, 0, nextID, nil, payload)
					if free <= need {
						if !errors.Is(err, ErrFull) {
							t.Fatalf("free %d need %d: got %v, want ErrFull", free, need, err)
						}
						break
					}
					if err != nil {
						t.Fatalf("free %d need %d: %v", free, need, err)
					}
					queue = append(queue, pkt{nextID, payload})
					queued += need
					nextID++
				}
			} else {
				// A batch of reads, then maybe a commit.
				for k := rng.IntN(8); k >= 0; k-- {
					n, err := r.Read(buf)
					if len(queue) == 0 {
						if !errors.Is(err, ErrEmpty) {
							t.Fatalf("empty model, Read: %d %v", n, err)
						}
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					want := queue[0]
					queue = queue[1:]
					d, _ := packet.ParseDescriptor(buf)
					if d.TransID != want.id || !bytes.Equal(buf[16:16+len(want.payload)], want.payload) {
						t.Fatalf("packet %d mismatch", want.id)
					}
					if n != int(Need(0, len(want.payload)))-trailerSize {
						t.Fatalf("length %d for payload %d", n, len(want.payload))
					}
					consumed := Need(0, len(want.payload))
					queued -= consumed
					uncommitted += consumed
					total += uint64(consumed)
					wrapped = total / uint64(dataSize)
				}
				if rng.IntN(3) != 0 {
					r.Commit()
					uncommitted = 0
				}
			}
		}
		t.Logf("%d pages: %d packets, %d wraps", pages, nextID, wrapped)
	}
}

// TestEndpointsMillionPackets runs a producer and a consumer goroutine over
// a pair of rings with real signalling, a million packets of mixed sizes,
// each checked by CRC and sequence number.
func TestEndpointsMillionPackets(t *testing.T) {
	count := 1_000_000
	if testing.Short() {
		count = 100_000
	}
	a, b := NewEndpointPair(t, 8, EndpointConfig{Spin: 20 * time.Microsecond})
	var wg sync.WaitGroup
	wg.Add(1)
	var sendErr error
	go func() {
		defer wg.Done()
		sendErr = sendMixed(a, count, 1)
	}()
	if err := recvMixed(b, count, 1); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	sa, sb := a.Stats(), b.Stats()
	t.Logf("sender %+v receiver %+v", sa, sb)
	if sa.PacketsSent != uint64(count) || sb.PacketsReceived != uint64(count) {
		t.Fatalf("counts %d / %d", sa.PacketsSent, sb.PacketsReceived)
	}
}

// NewEndpointPair builds two endpoints over in-process memory: a's outbound
// ring is b's inbound ring and vice versa.
func NewEndpointPair(t testing.TB, pagesPerRing int, cfg EndpointConfig) (a, b *Endpoint) {
	aToB, bToA := newMem(t, pagesPerRing), newMem(t, pagesPerRing)
	wa, rb := pair(t, aToB)
	wb, ra := pair(t, bToA)
	evA, evB := NewEvent(), NewEvent() // evA wakes a, evB wakes b
	t.Cleanup(func() { evA.Close(); evB.Close() })
	a = NewEndpoint(ra, wa, evB, evA, cfg)
	b = NewEndpoint(rb, wb, evA, evB, cfg)
	return a, b
}

// mixedSize picks the payload size of packet i from a spread that covers
// tiny, medium and near-page sizes.
func mixedSize(rng *rand.Rand) int {
	switch rng.IntN(4) {
	case 0:
		return 8 + rng.IntN(56)
	case 1:
		return 64 + rng.IntN(960)
	case 2:
		return 1024 + rng.IntN(3072)
	}
	return 12 + rng.IntN(4)*8
}

// sendMixed sends count packets: payload = seq u64, crc u32, len u32, data.
func sendMixed(e *Endpoint, count int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	buf := make([]byte, 4096+16)
	for i := 0; i < count; i++ {
		n := mixedSize(rng)
		data := buf[16 : 16+n]
		for j := 0; j < n; j += 8 {
			binary.LittleEndian.PutUint64(buf[16+j:], rng.Uint64())
		}
		binary.LittleEndian.PutUint64(buf[0:], uint64(i))
		binary.LittleEndian.PutUint32(buf[8:], crc32.ChecksumIEEE(data))
		binary.LittleEndian.PutUint32(buf[12:], uint32(n))
		if err := e.Send(packet.TypeDataInband, 0, uint64(i), nil, buf[:16+n]); err != nil {
			return err
		}
	}
	return nil
}

// recvMixed receives count packets from sendMixed and checks each.
func recvMixed(e *Endpoint, count int, seed uint64) error {
	buf := make([]byte, 8192)
	for i := 0; i < count; i++ {
		n, err := e.Recv(buf)
		if err != nil {
			return err
		}
		var p packet.Packet
		if err := packet.Parse(buf[:n], &p); err != nil {
			return err
		}
		seq := binary.LittleEndian.Uint64(p.Payload)
		sum := binary.LittleEndian.Uint32(p.Payload[8:])
		ln := binary.LittleEndian.Uint32(p.Payload[12:])
		if seq != uint64(i) || p.TransID != uint64(i) || int(ln)+16 > len(p.Payload) {
			return errors.New("sequence or length mismatch")
		}
		if crc32.ChecksumIEEE(p.Payload[16:16+ln]) != sum {
			return errors.New("checksum mismatch")
		}
	}
	return e.Flush()
}
