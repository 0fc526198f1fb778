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

// TestBatchPublish: appended packets stay invisible until Publish, which
// stores the write index once and signals by the same rule as Write, applied
// to the batch as a whole.
func TestBatchPublish(t *testing.T) {
	mem := newMem(t, 2)
	w, r := pair(t, mem)
	buf := make([]byte, 4096)
	appendN := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if err := w.Append(packet.TypeDataInband, 0, uint64(i), nil, make([]byte, 24)); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(3)
	if got := load(mem, offWriteIndex); got != 0 {
		t.Fatalf("write_index %#x before Publish, want 0", got)
	}
	if _, err := r.Read(buf); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Read before Publish: %v, want ErrEmpty", err)
	}
	if w.Unpublished() != 3*int(Need(0, 24)) {
		t.Fatalf("Unpublished %d", w.Unpublished())
	}
	if !w.Publish() {
		t.Error("a batch into an empty, unmasked ring must signal")
	}
	if w.Publish() {
		t.Error("an empty batch must not signal")
	}
	for i := 0; i < 3; i++ {
		if _, err := r.Read(buf); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	// Partly drained: the reader has not reached the end of what was
	// published, so a new batch needs no signal.
	appendN(2)
	w.Publish()
	r.Read(buf)
	r.Commit()
	appendN(1)
	if w.Publish() {
		t.Error("reader behind the last batch: must not signal")
	}
	r.Read(buf)
	r.Read(buf)
	r.Commit()
	r.SetInterruptMask(true)
	appendN(2)
	if w.Publish() {
		t.Error("masked reader must not be signalled")
	}
	r.Read(buf)
	r.Read(buf)
	r.Commit()
	r.SetInterruptMask(false)
	appendN(1)
	if got, want := w.Write(packet.TypeDataInband, 0, 9, nil, nil); !got || want != nil {
		t.Errorf("Write after an unpublished Append into an empty ring: signal %v, %v; want true", got, want)
	}
	for i := 0; i < 2; i++ {
		if _, err := r.Read(buf); err != nil {
			t.Fatalf("Write did not publish the appended packet before it: %v", err)
		}
	}
}

// TestNextInPlace: Next returns the packet where it lies in the ring (the
// slice aliases ring memory) unless it wraps, when it returns a contiguous
// copy with the same bytes as Read.
func TestNextInPlace(t *testing.T) {
	mem := newMem(t, 2) // 4 KiB data area
	w, r := pair(t, mem)
	payload := bytes.Repeat([]byte("abcdefgh"), 200) // 1600 bytes: 1624 with framing and trailer
	for i := 0; i < 2; i++ {
		if _, err := w.Write(packet.TypeDataInband, 0, uint64(i), nil, payload); err != nil {
			t.Fatal(err)
		}
	}
	b, err := r.Next(PageSize)
	if err != nil {
		t.Fatal(err)
	}
	if &b[0] != &mem[HeaderSize] {
		t.Fatal("Next copied a packet that does not wrap")
	}
	if !bytes.Equal(b[16:], payload) {
		t.Fatal("payload differs")
	}
	if _, err := r.Next(PageSize); err != nil {
		t.Fatal(err)
	}
	r.Commit()
	// The third packet starts at 3248 and wraps at 4096.
	if _, err := w.Write(packet.TypeDataInband, 0, 2, nil, payload); err != nil {
		t.Fatal(err)
	}
	b, err = r.Next(PageSize)
	if err != nil {
		t.Fatal(err)
	}
	d, err := packet.ParseDescriptor(b)
	if err != nil || d.TransID != 2 || len(b) != d.Size() || !bytes.Equal(b[16:], payload) {
		t.Fatalf("wrapped packet: %+v %v, %d bytes", d, err, len(b))
	}
	data := mem[HeaderSize:]
	if &b[0] == &data[3248] {
		t.Fatal("a wrapped packet cannot be returned in place")
	}
	if _, err := r.Next(PageSize); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Next on an empty ring: %v", err)
	}

	// The limit: a packet longer than max stays unread, and nothing is
	// allocated for it, as Read leaves a packet its buffer cannot hold.
	r.Commit()
	if _, err := w.Write(packet.TypeDataInband, 0, 3, nil, payload); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(len(payload)); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("Next over its limit: %v, want ErrShortBuffer", err)
	}
	if b, err := r.Next(len(payload) + packet.DescriptorSize); err != nil || len(b) != len(payload)+packet.DescriptorSize {
		t.Fatalf("Next after ErrShortBuffer: %d bytes, %v", len(b), err)
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
// TestRandomAgainstModel drives a ring with random bursts of writes and
// batches of reads, across thousands of wrap-arounds, and checks every packet
// against a model queue. Writes are published at once (Write) or appended
// and published later (Append, Publish); reads copy (Read) or look in place
// (Next), and every in-place packet of a batch is checked again just before
// the batch is committed, which is as long as Next promises it stays valid.
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
		var queue []pkt // published, not yet read
		var unpublished []pkt
		var queued, uncommitted uint32 // bytes written but unread; read but uncommitted
		var nextID uint64
		var wrapped, total, inPlace uint64
		buf := make([]byte, dataSize)
		type view struct {
			b    []byte
			want pkt
		}
		var views []view // in-place packets of the current read batch
		check := func(b []byte, want pkt) {
			t.Helper()
			d, _ := packet.ParseDescriptor(b)
			if d.TransID != want.id || !bytes.Equal(b[16:16+len(want.payload)], want.payload) {
				t.Fatalf("packet %d mismatch", want.id)
			}
			if len(b) != int(Need(0, len(want.payload)))-trailerSize {
				t.Fatalf("length %d for payload %d", len(b), len(want.payload))
			}
		}
		commit := func() {
			for _, v := range views {
				check(v.b, v.want)
			}
			views = views[:0]
			r.Commit()
			uncommitted = 0
		}
		publish := func() {
			w.Publish()
			queue = append(queue, unpublished...)
			unpublished = unpublished[:0]
		}
		for wrapped < 3000 {
			if rng.IntN(2) == 0 {
				// A burst of writes.
				batch := rng.IntN(3) == 0
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
					// Writer's view of used space: what is queued (published
					// or not) plus what was read but not yet committed.
					free := dataSize - queued - uncommitted
					var err error
					if batch {
						err = w.Append(packet.TypeDataInband, 0, nextID, nil, payload)
					} else {
						_, err = w.Write(packet.TypeDataInband, 0, nextID, nil, payload)
					}
					if free <= need {
						if !errors.Is(err, ErrFull) {
							t.Fatalf("free %d need %d: got %v, want ErrFull", free, need, err)
						}
						break
					}
					if err != nil {
						t.Fatalf("free %d need %d: %v", free, need, err)
					}
					if !batch {
						// Write publishes what was appended before it too.
						queue = append(queue, unpublished...)
						unpublished = unpublished[:0]
						queue = append(queue, pkt{nextID, payload})
					} else {
						unpublished = append(unpublished, pkt{nextID, payload})
					}
					queued += need
					nextID++
				}
				var unpub int
				for _, p := range unpublished {
					unpub += int(Need(0, len(p.payload)))
				}
				if w.Unpublished() != unpub {
					t.Fatalf("Unpublished %d, model %d", w.Unpublished(), unpub)
				}
				if rng.IntN(2) == 0 {
					publish()
				}
			} else {
				// A batch of reads, then maybe a commit.
				for k := rng.IntN(8); k >= 0; k-- {
					var b []byte
					var err error
					if rng.IntN(2) == 0 {
						var n int
						n, err = r.Read(buf)
						b = buf[:n]
					} else {
						b, err = r.Next(len(buf))
						if err == nil {
							views = append(views, view{b, queue[0]})
							inPlace++
						}
					}
					if len(queue) == 0 {
						if !errors.Is(err, ErrEmpty) {
							t.Fatalf("nothing published, read: %d bytes, %v", len(b), err)
						}
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					want := queue[0]
					queue = queue[1:]
					check(b, want)
					consumed := Need(0, len(want.payload))
					queued -= consumed
					uncommitted += consumed
					total += uint64(consumed)
					wrapped = total / uint64(dataSize)
				}
				if rng.IntN(3) != 0 {
					commit()
				}
			}
		}
		t.Logf("%d pages: %d packets (%d read in place), %d wraps", pages, nextID, inPlace, wrapped)
	}
}

// TestEndpointsMillionPackets runs a producer and a consumer goroutine over
// a pair of rings with real signalling, a million packets of mixed sizes,
// each checked by CRC and sequence number: once with Send and Recv, once
// with bursts of Queue then Publish and in-place reads (Next).
func TestEndpointsMillionPackets(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(map[bool]string{false: "send-recv", true: "queue-next"}[batched], func(t *testing.T) {
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
				sendErr = sendMixed(a, count, 1, batched)
			}()
			if err := recvMixed(b, count, 1, batched); err != nil {
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
		})
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
// With batched set it queues bursts of 1 to 32 packets and publishes each.
func sendMixed(e *Endpoint, count int, seed uint64, batched bool) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	burst := 0
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
		if !batched {
			if err := e.Send(packet.TypeDataInband, 0, uint64(i), nil, buf[:16+n]); err != nil {
				return err
			}
			continue
		}
		if err := e.Queue(packet.TypeDataInband, 0, uint64(i), nil, buf[:16+n]); err != nil {
			return err
		}
		if burst--; burst <= 0 {
			if err := e.Publish(); err != nil {
				return err
			}
			burst = 1 + rng.IntN(32)
		}
	}
	return e.Publish()
}

// recvMixed receives count packets from sendMixed and checks each, copied
// out (Recv) or in place (Next).
func recvMixed(e *Endpoint, count int, seed uint64, inPlace bool) error {
	buf := make([]byte, 8192)
	var p packet.Packet
	for i := 0; i < count; i++ {
		var b []byte
		var err error
		if inPlace {
			b, err = e.Next(len(buf))
		} else {
			var n int
			n, err = e.Recv(buf)
			b = buf[:n]
		}
		if err != nil {
			return err
		}
		if err := packet.Parse(b, &p); err != nil {
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
