// Package ring implements one direction of a VMBus channel: a
// single-producer, single-consumer ring buffer in shared memory, laid out and
// driven exactly as Hyper-V's, so that either end can be a Linux guest
// driver, Hyper-V, or Partita.
//
// A ring is a 4 KiB header page followed by a data area of D bytes:
//
//	header +0x00 write_index     u32  producer: offset of the next packet
//	       +0x04 read_index      u32  consumer: offset of the next unread byte
//	       +0x08 interrupt_mask  u32  consumer: non-zero = do not signal me
//	       +0x0C pending_send_sz u32  producer: free bytes it waits for, 0 = none
//	       +0x40 feature_bits    u32  bit 0: pending_send_sz is honoured
//	data   +0x1000 ... D bytes, used circularly
//
// Each packet is a 16-byte descriptor (package packet), its extended header
// and payload padded to 8 bytes, then an 8-byte trailer holding the packet's
// start offset << 32. Packets are not split at the end of the data area; the
// bytes simply continue at offset 0. The producer never fills the ring
// completely (at least 8 bytes stay free), so write_index == read_index means
// empty.
//
// Signalling follows Hyper-V's suppression rules, which let a busy channel
// run without interrupts:
//   - the writer signals the reader only when its write turned the ring from
//     empty to non-empty, and only if the reader has not set interrupt_mask;
//   - a writer that finds the ring full sets pending_send_sz to what it needs;
//     the reader signals it when freeing space moves the ring from "not
//     enough" to "enough" for that size.
//
// An example exchange, host writing to a guest that reads in batches:
//
//	host:  Write(pkt1)            ring was empty, mask 0  -> signal guest
//	guest: SetInterruptMask(true) while draining
//	host:  Write(pkt2)            ring not empty          -> no signal
//	guest: Read, Read, Commit     publishes read_index once
//	guest: SetInterruptMask(false), re-checks Available(), then sleeps
//
// Both ends batch their index updates. A reader reads several packets and
// publishes read_index once (Commit); a writer appends several packets and
// publishes write_index once (Append, then Publish). Each publication is a
// full barrier on the shared header line, so batching saves one per packet.
// A reader may also look at a packet where it lies in the ring (Next)
// instead of copying it out (Read), until its next Commit.
//
// The peer is hostile: every index read from the shared header is checked
// (below D, 8-aligned) before use, each side keeps its own copy of the index
// it owns, and a descriptor is copied out of shared memory once and validated
// before its length is trusted. Corruption is reported as ErrCorrupt and
// leaves the ring unusable for that side; the caller closes the channel.
//
// A Reader and a Writer are each used by one goroutine at a time.
package ring

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/partita-hv/partita/vmbus/packet"
)

// Header layout (Hyper-V hv_ring_buffer).
const (
	HeaderSize = 4096
	PageSize   = 4096

	offWriteIndex    = 0x00
	offReadIndex     = 0x04
	offInterruptMask = 0x08
	offPendingSend   = 0x0C
	offFeatureBits   = 0x40

	// FeaturePendingSendSize is feature bit 0: the ring's writer sets
	// pending_send_sz when blocked and its reader signals on the transition.
	FeaturePendingSendSize = 1

	trailerSize = 8
)

// Errors. Each is wrapped with context.
var (
	// ErrEmpty: no complete packet to read.
	ErrEmpty = errors.New("ring: empty")
	// ErrFull: not enough free space for the packet right now.
	ErrFull = errors.New("ring: full")
	// ErrTooLarge: the packet can never fit in this ring.
	ErrTooLarge = errors.New("ring: packet larger than the ring")
	// ErrShortBuffer: the caller's buffer is smaller than the next packet,
	// which stays unread.
	ErrShortBuffer = errors.New("ring: buffer too small for packet")
	// ErrCorrupt: the peer left an index or descriptor that breaks the ring
	// protocol. The ring must not be used further.
	ErrCorrupt = errors.New("ring: corrupt")
	// ErrBadLayout: memory handed to New is not a valid ring.
	ErrBadLayout = errors.New("ring: bad layout")
)

// ring is the shared state of one ring buffer.
type ring struct {
	hdr  []byte // HeaderSize bytes, accessed atomically
	data []byte // the circular data area
	size uint32 // len(data)
}

func newRing(mem []byte) (ring, error) {
	if len(mem) < 2*PageSize || len(mem)%PageSize != 0 || len(mem)-HeaderSize > 1<<31 {
		return ring{}, fmt.Errorf("%w: %d bytes; want a multiple of %d, at least 2 pages", ErrBadLayout, len(mem), PageSize)
	}
	if !aligned8(mem) {
		return ring{}, fmt.Errorf("%w: memory not 8-byte aligned", ErrBadLayout)
	}
	return ring{hdr: mem[:HeaderSize:HeaderSize], data: mem[HeaderSize:], size: uint32(len(mem) - HeaderSize)}, nil
}

// checkIndex validates an index read from the shared header.
func (r *ring) checkIndex(name string, v uint32) error {
	if v >= r.size || v%8 != 0 {
		return fmt.Errorf("%w: %s %#x (data area %#x bytes)", ErrCorrupt, name, v, r.size)
	}
	return nil
}

// used is the number of bytes between read index rd and write index wr.
func (r *ring) used(wr, rd uint32) uint32 {
	if wr >= rd {
		return wr - rd
	}
	return r.size - rd + wr
}

// advance moves index i forward by n bytes (n <= size), wrapping.
func (r *ring) advance(i, n uint32) uint32 {
	i += n
	if i >= r.size {
		i -= r.size
	}
	return i
}

// copyOut copies len(dst) bytes starting at data offset off, wrapping.
func (r *ring) copyOut(dst []byte, off uint32) {
	n := copy(dst, r.data[off:])
	copy(dst[n:], r.data)
}

// copyIn copies src to data offset off, wrapping, and returns the offset
// after it.
func (r *ring) copyIn(off uint32, src []byte) uint32 {
	n := copy(r.data[off:], src)
	if n < len(src) {
		copy(r.data, src[n:])
	}
	return r.advance(off, uint32(len(src)))
}

// InitHeader prepares fresh ring memory as a Linux guest does before it
// hands the pages to the host: the header page zeroed and feature bit 0 set.
// Only the side that allocates the ring calls it.
func InitHeader(mem []byte) error {
	r, err := newRing(mem)
	if err != nil {
		return err
	}
	clear(r.hdr)
	store(r.hdr, offFeatureBits, FeaturePendingSendSize)
	return nil
}

// Writer is the producer end of a ring. Append writes packets at a private
// index; Publish makes them visible with one store and decides, once for the
// batch, whether the reader must be signalled. Write does both.
type Writer struct {
	r         ring
	wr        uint32 // our write index: the authoritative copy
	published uint32 // write index last stored to the header
	cachedRd  uint32 // last read index seen; refreshed when space looks short
}

// NewWriter attaches a producer to ring memory (header page + data area).
// It takes the current write index from the header, so both a fresh ring and
// one reopened after a restart work. It sets feature bit 0 on this ring, the
// promise to use pending_send_sz.
func NewWriter(mem []byte) (*Writer, error) {
	r, err := newRing(mem)
	if err != nil {
		return nil, err
	}
	w := &Writer{r: r}
	w.wr = load(r.hdr, offWriteIndex)
	if err := r.checkIndex("write_index", w.wr); err != nil {
		return nil, err
	}
	w.published = w.wr
	w.cachedRd = load(r.hdr, offReadIndex)
	if err := r.checkIndex("read_index", w.cachedRd); err != nil {
		return nil, err
	}
	or(r.hdr, offFeatureBits, FeaturePendingSendSize)
	return w, nil
}

// DataSize is the size of the ring's data area.
func (w *Writer) DataSize() int { return int(w.r.size) }

// MaxPacket is the largest framed packet (descriptor, headers, padded
// payload; trailer excluded) this ring can ever hold.
func (w *Writer) MaxPacket() int { return int(w.r.size) - 2*trailerSize }

// Write frames and writes one packet: descriptor, extended header ext (a
// multiple of 8 bytes), payload, zero padding and trailer. It reports whether
// the reader must now be signalled (the ring went from empty to non-empty and
// the reader has not masked interrupts). ErrFull leaves the ring untouched.
// Write is Append then Publish: it also publishes packets appended before it.
func (w *Writer) Write(t packet.Type, flags uint16, transID uint64, ext, payload []byte) (signal bool, err error) {
	if err := w.Append(t, flags, transID, ext, payload); err != nil {
		return false, err
	}
	return w.Publish(), nil
}

// Append writes one packet as Write does but leaves it invisible to the
// reader until Publish. A batch of Appends then one Publish costs one store
// to the shared header and one full barrier, instead of one per packet; the
// reader sees nothing of the batch until then. ErrFull leaves the ring
// untouched; space held by unpublished packets counts as used, so a writer
// that finds the ring full publishes before it waits.
func (w *Writer) Append(t packet.Type, flags uint16, transID uint64, ext, payload []byte) error {
	d, err := packet.Frame(t, flags, transID, len(ext), len(payload))
	if err != nil {
		return err
	}
	return w.append(d, ext, payload)
}

// Need is the ring space a packet with these sizes takes, trailer included:
// the value to wait for as pending_send_sz.
func Need(extLen, payloadLen int) uint32 {
	return uint32((packet.DescriptorSize+extLen+payloadLen+7)&^7) + trailerSize
}

func (w *Writer) append(d packet.Descriptor, ext, payload []byte) error {
	total := uint32(d.Size()) + trailerSize
	if total > w.r.size-trailerSize {
		return fmt.Errorf("%w: %d bytes, ring holds at most %d", ErrTooLarge, total, w.r.size-trailerSize)
	}
	if w.free(w.cachedRd) <= total {
		rd := load(w.r.hdr, offReadIndex)
		if err := w.r.checkIndex("read_index", rd); err != nil {
			return err
		}
		w.cachedRd = rd
		if w.free(rd) <= total {
			return ErrFull // flow control, not a fault: bare, so a writer polling a full ring allocates nothing
		}
	}

	old := w.wr
	if end := old + total; end <= w.r.size {
		// Fast path: the packet does not wrap; build it in place.
		b := w.r.data[old:end]
		d.Put(b)
		n := copy(b[packet.DescriptorSize:], ext)
		n += copy(b[packet.DescriptorSize+n:], payload)
		clear(b[packet.DescriptorSize+n : d.Size()])
		binary.LittleEndian.PutUint64(b[d.Size():], uint64(old)<<32)
		w.wr = w.r.advance(old, total)
	} else {
		var desc [packet.DescriptorSize]byte
		d.Put(desc[:])
		off := w.r.copyIn(old, desc[:])
		off = w.r.copyIn(off, ext)
		off = w.r.copyIn(off, payload)
		if pad := d.Size() - packet.DescriptorSize - len(ext) - len(payload); pad > 0 {
			var zeros [8]byte
			off = w.r.copyIn(off, zeros[:pad])
		}
		var trailer [trailerSize]byte
		binary.LittleEndian.PutUint64(trailer[:], uint64(old)<<32)
		w.wr = w.r.copyIn(off, trailer[:])
	}
	return nil
}

// Unpublished is the number of bytes appended but not yet published.
func (w *Writer) Unpublished() int { return int(w.r.used(w.wr, w.published)) }

// Publish stores the write index, making every appended packet visible, and
// reports whether the reader must be signalled: the batch turned the ring
// from empty to non-empty (the reader had consumed everything published
// before it) and the reader has not masked interrupts.
func (w *Writer) Publish() (signal bool) {
	if w.wr == w.published {
		return false
	}
	old := w.published
	w.published = w.wr
	// The atomic store publishes the packet bytes before the index, and is
	// the full barrier that orders it before the loads below.
	store(w.r.hdr, offWriteIndex, w.wr)

	// Signal only on empty -> non-empty, and only if not masked.
	if load(w.r.hdr, offInterruptMask) != 0 {
		return false
	}
	rd := load(w.r.hdr, offReadIndex)
	w.cachedRd = rd
	return rd == old
}

// free is the raw free space for read index rd; the writer needs strictly
// more than a packet's size, so the ring never fills completely.
func (w *Writer) free(rd uint32) uint32 {
	return w.r.size - w.r.used(w.wr, rd)
}

// drained reports whether the reader has published a read index equal to
// our write index (so nothing is left unpublished either).
func (w *Writer) drained() bool { return load(w.r.hdr, offReadIndex) == w.wr }

// SetPendingSend tells the reader that the writer is blocked until n bytes
// are free (n rounded up to 8); 0 says it no longer waits. After setting it a
// writer must retry its write before sleeping, to close the race with a
// reader that freed space in between.
func (w *Writer) SetPendingSend(n uint32) {
	store(w.r.hdr, offPendingSend, (n+7)&^7)
}

// Reader is the consumer end of a ring. Reads advance a private index;
// Commit publishes it, so a batch of reads costs one store and at most one
// signal.
type Reader struct {
	r         ring
	rd        uint32 // next byte to read (private until Commit)
	committed uint32 // read index last published
	cachedWr  uint32 // last write index seen
	wrapped   []byte // Next's copy of a packet that wraps; allocated on first use
}

// NewReader attaches a consumer to ring memory, starting at the header's
// current read index.
func NewReader(mem []byte) (*Reader, error) {
	r, err := newRing(mem)
	if err != nil {
		return nil, err
	}
	rd := load(r.hdr, offReadIndex)
	if err := r.checkIndex("read_index", rd); err != nil {
		return nil, err
	}
	return &Reader{r: r, rd: rd, committed: rd, cachedWr: rd}, nil
}

// DataSize is the size of the ring's data area.
func (r *Reader) DataSize() int { return int(r.r.size) }

// Pending is the number of bytes read but not yet committed.
func (r *Reader) Pending() int { return int(r.r.used(r.rd, r.committed)) }

// refresh loads and checks the writer's index.
func (r *Reader) refresh() error {
	wr := load(r.r.hdr, offWriteIndex)
	if err := r.r.checkIndex("write_index", wr); err != nil {
		return err
	}
	r.cachedWr = wr
	return nil
}

// Available reports whether a packet is waiting, looking at the shared write
// index (use it to re-check after clearing the interrupt mask).
func (r *Reader) Available() (bool, error) {
	if err := r.refresh(); err != nil {
		return false, err
	}
	return r.cachedWr != r.rd, nil
}

// Read copies the next packet (descriptor through padded payload, trailer
// stripped) into p and returns its length. The packet's descriptor has been
// checked for framing (package packet's ParseDescriptor) and its length
// against the bytes the writer published; the bytes in p are a private copy
// the writer can no longer change. It returns ErrEmpty when no packet is
// waiting, ErrShortBuffer (packet left unread) when p is too small, and
// ErrCorrupt when the writer broke the protocol.
func (r *Reader) Read(p []byte) (int, error) {
	desc, n, err := r.peek()
	if err != nil {
		return 0, err
	}
	if int(n) > len(p) {
		return 0, fmt.Errorf("%w: packet %d bytes, buffer %d", ErrShortBuffer, n, len(p))
	}
	// The descriptor comes from our validated copy, not a second read of
	// shared memory, so p[:16] always agrees with n.
	copy(p, desc[:])
	r.r.copyOut(p[packet.DescriptorSize:n], r.r.advance(r.rd, packet.DescriptorSize))
	r.rd = r.r.advance(r.rd, n+trailerSize)
	return int(n), nil
}

// Next returns the next packet (descriptor through padded payload, trailer
// stripped, as Read would copy it) without copying it: the slice is the
// packet where it lies in the ring. max bounds the packet as len(p) bounds
// it for Read: a longer packet is left unread and Next returns
// ErrShortBuffer, so a peer cannot make the reader hold more than max bytes.
// A packet that wraps around the end of the data area is copied into a
// buffer the Reader keeps (at most max bytes), so the slice is contiguous
// either way. The slice stays valid until the next Commit, which gives its
// bytes back to the writer; packets returned by several Next calls before
// one Commit are all valid together (only one packet of a batch can wrap).
//
// The bytes are shared with the writer, which may change them at any time,
// descriptor included, even after Next checked it. A consumer therefore reads
// each field it relies on exactly once and checks the value it read, as
// package packet's Parse does; the slice's length is fixed and safe. Errors
// are those of Read.
func (r *Reader) Next(max int) ([]byte, error) {
	_, n, err := r.peek()
	if err != nil {
		return nil, err
	}
	if int(n) > max {
		return nil, fmt.Errorf("%w: packet %d bytes, limit %d", ErrShortBuffer, n, max)
	}
	var b []byte
	if end := r.rd + n; end <= r.r.size {
		b = r.r.data[r.rd:end:end]
	} else {
		if cap(r.wrapped) < int(n) {
			r.wrapped = make([]byte, n)
		}
		b = r.wrapped[:n:n]
		r.r.copyOut(b, r.rd)
	}
	r.rd = r.r.advance(r.rd, n+trailerSize)
	return b, nil
}

// peek validates the next packet's descriptor against the published bytes
// and returns a private copy of it and the packet's length, trailer
// excluded, without consuming it.
func (r *Reader) peek() (desc [packet.DescriptorSize]byte, n uint32, err error) {
	avail := r.r.used(r.cachedWr, r.rd)
	if avail == 0 {
		if err := r.refresh(); err != nil {
			return desc, 0, err
		}
		if avail = r.r.used(r.cachedWr, r.rd); avail == 0 {
			return desc, 0, ErrEmpty
		}
	}
	if avail < packet.DescriptorSize+trailerSize {
		return desc, 0, fmt.Errorf("%w: %d bytes published, less than a packet", ErrCorrupt, avail)
	}
	r.r.copyOut(desc[:], r.rd)
	d, err := packet.ParseDescriptor(desc[:])
	if err != nil {
		return desc, 0, fmt.Errorf("%w: at %#x: %w", ErrCorrupt, r.rd, err)
	}
	n = uint32(d.Size())
	if n+trailerSize > avail {
		return desc, 0, fmt.Errorf("%w: packet at %#x claims %d bytes, %d published", ErrCorrupt, r.rd, n+trailerSize, avail)
	}
	return desc, n, nil
}

// Commit publishes the read index for everything read since the last commit
// and reports whether the writer must be signalled: it had set
// pending_send_sz, feature bit 0 is set on this ring, and this batch moved
// the free space from not enough to enough (Hyper-V's rule as Linux's
// hv_pkt_iter_close applies it).
func (r *Reader) Commit() (signal bool) {
	if r.rd == r.committed {
		return false
	}
	read := r.r.used(r.rd, r.committed)
	r.committed = r.rd
	store(r.r.hdr, offReadIndex, r.rd)

	if load(r.r.hdr, offFeatureBits)&FeaturePendingSendSize == 0 {
		return false
	}
	pending := load(r.r.hdr, offPendingSend)
	if pending == 0 {
		return false
	}
	wr := load(r.r.hdr, offWriteIndex)
	if r.r.checkIndex("write_index", wr) != nil {
		return false // the next Read reports the corruption
	}
	curFree := r.r.size - r.r.used(wr, r.rd)
	if curFree < read || curFree-read > pending {
		// Either there was already enough space before this batch, or the
		// writer has written since (it is not blocked).
		return false
	}
	return curFree > pending
}

// SetInterruptMask sets or clears this ring's interrupt_mask: while set, the
// writer does not signal. A reader that clears it must re-check Available
// before sleeping.
func (r *Reader) SetInterruptMask(masked bool) {
	var v uint32
	if masked {
		v = 1
	}
	store(r.r.hdr, offInterruptMask, v)
}
