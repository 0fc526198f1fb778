// Package echo is a minimal synthetic device for exercising VMBus end to
// end: the host side verifies a checksummed packet stream from the guest
// and, for packets that ask for it, answers with a completion carrying the
// same payload back. Tests, benchmarks and the demo command use it to move
// real traffic through the real server, client, rings and transport.
//
// Stream payload format (little-endian), carried in in-band packets whose
// transaction id equals the sequence number:
//
//	+0  seq   u64  0, 1, 2, ... per channel open
//	+8  crc   u32  CRC-32 (IEEE) of data
//	+12 len   u32  bytes of data
//	+16 data
//
// A packet that breaks the format is a hostile guest: the device fails the
// channel (the server closes and rescinds it) and counts it. A device with
// SkipDataCheck set checks sequence numbers and lengths but not the CRC, so
// benchmarks measure the transport rather than checksumming; senders then
// pass Options.NoChecksum and leave the CRC zero.
package echo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/partita-hv/partita/vmbus/chanmsg"
	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/packet"
	"github.com/partita-hv/partita/vmbus/ring"
)

// InterfaceType is the echo device's class GUID (Partita's own).
var InterfaceType = chanmsg.MustParseGUID("5c1f7d2a-9a41-4f0e-8d35-6a7e3b2c9f10")

// HeaderSize is the stream header before the data.
const HeaderSize = 16

// MaxPacket bounds the packets the device accepts (descriptor included).
const MaxPacket = 64 << 10

// ErrStream: a packet that breaks the stream format.
var ErrStream = errors.New("echo: bad stream packet")

// Device is the host side. One Device serves one channel at a time.
type Device struct {
	// SkipDataCheck turns off CRC verification (sequence numbers and
	// lengths are still checked). For benchmarks.
	SkipDataCheck bool

	received atomic.Uint64
	bytes    atomic.Uint64
	faults   atomic.Uint64

	mu    sync.Mutex
	done  chan struct{} // closed when serve returns; guarded by mu
	stats ring.Stats    // endpoint counters at the last close; guarded by mu
}

// Stats returns packets and data bytes verified, and faults seen.
func (d *Device) Stats() (packets, bytes, faults uint64) {
	return d.received.Load(), d.bytes.Load(), d.faults.Load()
}

// Open starts serving the channel.
func (d *Device) Open(ch *host.Channel) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = make(chan struct{})
	go d.serve(ch, d.done)
	return nil
}

// Close waits until the serving goroutine has left the rings.
func (d *Device) Close(*host.Channel) {
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	if done != nil {
		<-done
	}
}

// EndpointStats returns the host endpoint's counters as of the last close.
func (d *Device) EndpointStats() ring.Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

func (d *Device) serve(ch *host.Channel, done chan struct{}) {
	ep := ch.Endpoint()
	defer func() {
		d.mu.Lock()
		d.stats = ep.Stats()
		d.mu.Unlock()
		close(done)
	}()
	var p packet.Packet
	for seq := uint64(0); ; seq++ {
		// Completions are queued while packets keep coming and published
		// once the inbound ring has run dry, one barrier per burst.
		if err := ep.PublishIdle(); err != nil {
			if !errors.Is(err, ring.ErrClosed) {
				ch.Fail(err)
			}
			return
		}
		// The packet is read in place: check reads each field once.
		b, err := ep.Next(MaxPacket)
		if err != nil {
			if !errors.Is(err, ring.ErrClosed) {
				d.faults.Add(1)
				ch.Fail(err)
			}
			return
		}
		data, err := d.check(b, &p, seq)
		if err != nil {
			d.faults.Add(1)
			ch.Fail(err)
			return
		}
		d.received.Add(1)
		d.bytes.Add(uint64(len(data)))
		if p.CompletionRequested() {
			if err := ep.Queue(packet.TypeCompletion, 0, p.TransID, nil, p.Payload[:HeaderSize+len(data)]); err != nil {
				if !errors.Is(err, ring.ErrClosed) {
					ch.Fail(err)
				}
				return
			}
		}
	}
}

// check parses one stream packet and verifies it is number seq.
func (d *Device) check(b []byte, p *packet.Packet, seq uint64) ([]byte, error) {
	if err := packet.Parse(b, p); err != nil {
		return nil, err
	}
	return checkPayload(p.Payload, seq, p.TransID, !d.SkipDataCheck)
}

// CheckPayload verifies a stream payload (with any tail padding) against
// the expected sequence number and transaction id, CRC included, and
// returns its data. It reads each header field once, so the payload may lie
// in a ring the sender can still write.
func CheckPayload(payload []byte, seq, transID uint64) ([]byte, error) {
	return checkPayload(payload, seq, transID, true)
}

func checkPayload(payload []byte, seq, transID uint64, crc bool) ([]byte, error) {
	if len(payload) < HeaderSize {
		return nil, fmt.Errorf("%w: %d-byte payload", ErrStream, len(payload))
	}
	got := binary.LittleEndian.Uint64(payload)
	n := binary.LittleEndian.Uint32(payload[12:])
	if got != seq || transID != seq {
		return nil, fmt.Errorf("%w: sequence %d (transaction %d), want %d", ErrStream, got, transID, seq)
	}
	if uint64(n) > uint64(len(payload)-HeaderSize) {
		return nil, fmt.Errorf("%w: length %d in %d-byte payload", ErrStream, n, len(payload))
	}
	data := payload[HeaderSize : HeaderSize+n]
	if crc && crc32.ChecksumIEEE(data) != binary.LittleEndian.Uint32(payload[8:]) {
		return nil, fmt.Errorf("%w: checksum of packet %d", ErrStream, seq)
	}
	return data, nil
}

// Sizes picks data sizes for a stream.
type Sizes func(r *rand.Rand) int

// Fixed is a stream of equal sizes.
func Fixed(n int) Sizes { return func(*rand.Rand) int { return n } }

// Mixed spreads sizes over tiny, small, medium and near-page packets.
func Mixed(r *rand.Rand) int {
	switch r.IntN(4) {
	case 0:
		return r.IntN(48)
	case 1:
		return 64 + r.IntN(960)
	case 2:
		return 1024 + r.IntN(3072)
	}
	return 8 * r.IntN(4)
}

// Options shape a stream.
type Options struct {
	// Completions asks for a completion per packet; the caller must run
	// Drain concurrently.
	Completions bool
	// NoChecksum leaves the CRC zero, for a device with SkipDataCheck, and
	// sends the same data in every packet (only the header changes), so a
	// benchmark's sender pays for the ring and not for making up data.
	NoChecksum bool
}

// blockSize is the random block packet data is cut from.
const blockSize = 1 << 20

// Send streams count packets of the given sizes over ep, starting at
// sequence 0, and publishes the last of them before it returns. Packet data
// is cut from a random block at a rotating offset, so every packet differs
// without costing a random-number draw per byte.
func Send(ep *ring.Endpoint, count int, sizes Sizes, seed uint64, opt Options) error {
	r := rand.New(rand.NewPCG(seed, 7))
	block := make([]byte, blockSize+MaxPacket)
	for i := 0; i+8 <= len(block); i += 8 {
		binary.LittleEndian.PutUint64(block[i:], r.Uint64())
	}
	buf := make([]byte, MaxPacket)
	var flags uint16
	if opt.Completions {
		flags = packet.FlagCompletionRequested
	}
	for seq := 0; seq < count; seq++ {
		n := sizes(r)
		if HeaderSize+n+packet.DescriptorSize > MaxPacket {
			return fmt.Errorf("echo: %d-byte packet exceeds %d", n, MaxPacket)
		}
		payload := buf[:HeaderSize+n]
		if !opt.NoChecksum || seq == 0 {
			off := (seq * 4099) % blockSize
			copy(payload[HeaderSize:], block[off:off+n])
		}
		binary.LittleEndian.PutUint64(payload, uint64(seq))
		var sum uint32
		if !opt.NoChecksum {
			sum = crc32.ChecksumIEEE(payload[HeaderSize:])
		}
		binary.LittleEndian.PutUint32(payload[8:], sum)
		binary.LittleEndian.PutUint32(payload[12:], uint32(n))
		// A stream queues its packets; Queue publishes every quarter ring
		// and whenever the ring is full.
		if err := ep.Queue(packet.TypeDataInband, flags, uint64(seq), nil, payload); err != nil {
			return fmt.Errorf("send %d: %w", seq, err)
		}
	}
	return ep.Publish()
}

// Drain receives count completions from the device and verifies each
// echoes the packet it completes.
func Drain(ep *ring.Endpoint, count int) error {
	var p packet.Packet
	for seq := uint64(0); seq < uint64(count); seq++ {
		b, err := ep.Next(MaxPacket)
		if err != nil {
			return fmt.Errorf("completion %d: %w", seq, err)
		}
		if err := packet.Parse(b, &p); err != nil {
			return err
		}
		if p.Type != packet.TypeCompletion {
			return fmt.Errorf("%w: %v packet where a completion was due", ErrStream, p.Type)
		}
		if _, err := CheckPayload(p.Payload, seq, p.TransID); err != nil {
			return err
		}
	}
	return nil
}

// GuestResult is what RunGuest did.
type GuestResult struct {
	Packets int
	Elapsed time.Duration
	Stats   ring.Stats // the guest endpoint's counters
}

// RunGuest finds the echo offer, opens it with rings of ringPages pages each
// way, streams count packets (with completions, checked as they return, if
// opt asks for them), waits until the host has consumed everything and
// closes the channel.
func RunGuest(c *client.Client, ringPages, count int, sizes Sizes, opt Options) (GuestResult, error) {
	o, err := c.Find(InterfaceType)
	if err != nil {
		return GuestResult{}, err
	}
	ch, err := c.Open(o, client.RingConfig{SendPages: ringPages, RecvPages: ringPages})
	if err != nil {
		return GuestResult{}, err
	}
	defer ch.Close()
	ep := ch.Endpoint()
	start := time.Now()
	drained := make(chan error, 1)
	if opt.Completions {
		go func() { drained <- Drain(ep, count) }()
	} else {
		drained <- nil
	}
	if err := Send(ep, count, sizes, 42, opt); err != nil {
		return GuestResult{}, err
	}
	if err := <-drained; err != nil {
		return GuestResult{}, err
	}
	for deadline := time.Now().Add(30 * time.Second); !ep.Drained(); time.Sleep(50 * time.Microsecond) {
		if time.Now().After(deadline) {
			return GuestResult{}, errors.New("echo: host did not drain the ring within 30 s")
		}
	}
	return GuestResult{Packets: count, Elapsed: time.Since(start), Stats: ep.Stats()}, ch.Close()
}
