// Package ic is the wire format of Hyper-V's integration services (ICs):
// heartbeat, shutdown, time sync and key-value pair exchange ride channels
// whose packets carry a pipe header, an IC message header and a body
// (hyperv-protocols.md, section 7). Package vsp/ic is the host side,
// vsc/ic the guest side.
//
// The host sends requests (flags TRANSACTION|REQUEST) in in-band packets;
// the guest answers each with an in-band packet of the same transaction
// id and length, edited in place (flags TRANSACTION|RESPONSE). The first
// exchange on every channel is the version negotiation.
//
// Parse is strict about what a peer controls: the pipe header's type and
// length, the IC message size against the bytes present, negotiation
// counts, and each service body's minimum size.
package ic

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/partita-hv/partita/vmbus/chanmsg"
)

// Interface types and the instance GUIDs Hyper-V uses.
var (
	HeartbeatType    = chanmsg.MustParseGUID("57164f39-9115-4e78-ab55-382f3bd5422d")
	ShutdownType     = chanmsg.MustParseGUID("0e0b6031-5213-4934-818b-38d90ced39db")
	ShutdownInstance = chanmsg.MustParseGUID("b6650ff7-33bc-4840-8048-e0676786f393")
	TimeSyncType     = chanmsg.MustParseGUID("9527e630-d0ae-497b-adce-e80ab0175caf")
	TimeSyncInstance = chanmsg.MustParseGUID("2dd1ce17-079e-403c-b352-a1921ee207ee")
	KVPType          = chanmsg.MustParseGUID("a9a0f4e7-5a45-4d96-b827-8a841e8c03e6")
	KVPInstance      = chanmsg.MustParseGUID("242ff919-07db-4180-9c2e-b86cb68c8c55")
	// HeartbeatInstance is Partita's: Hyper-V's is not in the fact sheet.
	HeartbeatInstance = chanmsg.MustParseGUID("fd6f9c43-5b0d-4a3c-9a3e-61c1f4a6b8a1")
)

// Offer flags and pipe mode of an IC channel: a message-mode named pipe.
const (
	OfferFlags      = 0x0011
	PipeMessageMode = 4
)

// Message types.
const (
	TypeNegotiate = 0
	TypeHeartbeat = 1
	TypeKVP       = 2
	TypeShutdown  = 3
	TypeTimeSync  = 4
)

// Header flags.
const (
	FlagTransaction = 1
	FlagRequest     = 2
	FlagResponse    = 4
)

// Status codes (HRESULTs).
const (
	StatusOK           = 0x00000000
	StatusFail         = 0x80004005
	StatusNoMoreItems  = 0x80070103
	StatusNotSupported = 0x80070032
)

// Layout.
const (
	pipeHeaderSize = 8
	headerSize     = 20
	// BodyOffset is where a message body starts in a packet payload.
	BodyOffset = pipeHeaderSize + headerSize
	// MaxMessage bounds an IC packet payload (openvmm's limit).
	MaxMessage = 13312
	pipeData   = 1 // pipe packet type DATA
	maxCount   = 100
)

// ErrBadMessage: a packet that breaks the format.
var ErrBadMessage = errors.New("ic: bad message")

// Version is a major.minor pair.
type Version struct{ Major, Minor uint16 }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Header is the IC message header.
type Header struct {
	Framework Version
	Type      uint16
	Message   Version
	Size      uint16 // body bytes
	Status    uint32
	TransID   uint8
	Flags     uint8
}

// Message is a parsed packet payload: its header and its body (which
// aliases the payload, Header.Size bytes).
type Message struct {
	Header
	Body []byte
}

// Parse decodes a packet payload (which may carry tail padding).
func Parse(b []byte) (Message, error) {
	if len(b) < BodyOffset {
		return Message{}, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	le := binary.LittleEndian
	if t := le.Uint32(b); t != pipeData {
		return Message{}, fmt.Errorf("%w: pipe packet type %d", ErrBadMessage, t)
	}
	if n := le.Uint32(b[4:]); n < headerSize || uint64(n) > uint64(len(b)-pipeHeaderSize) {
		return Message{}, fmt.Errorf("%w: pipe length %d in %d bytes", ErrBadMessage, n, len(b))
	}
	h := b[pipeHeaderSize:]
	m := Message{Header: Header{
		Framework: Version{le.Uint16(h), le.Uint16(h[2:])},
		Type:      le.Uint16(h[4:]),
		Message:   Version{le.Uint16(h[6:]), le.Uint16(h[8:])},
		Size:      le.Uint16(h[10:]),
		Status:    le.Uint32(h[12:]),
		TransID:   h[16],
		Flags:     h[17],
	}}
	if int(m.Size) > len(b)-BodyOffset {
		return Message{}, fmt.Errorf("%w: body of %d bytes in %d", ErrBadMessage, m.Size, len(b)-BodyOffset)
	}
	m.Body = b[BodyOffset : BodyOffset+int(m.Size)]
	return m, nil
}

// Build makes a packet payload: pipe header, h (with Size set to the
// body's length) and body, padded with zeros to at least size bytes (IC
// peers answer in the buffer they were sent, so requests leave room).
func Build(h Header, body []byte, size int) []byte {
	n := max(BodyOffset+len(body), size)
	b := make([]byte, n)
	le := binary.LittleEndian
	le.PutUint32(b, pipeData)
	le.PutUint32(b[4:], uint32(n-pipeHeaderSize))
	x := b[pipeHeaderSize:]
	le.PutUint16(x, h.Framework.Major)
	le.PutUint16(x[2:], h.Framework.Minor)
	le.PutUint16(x[4:], h.Type)
	le.PutUint16(x[6:], h.Message.Major)
	le.PutUint16(x[8:], h.Message.Minor)
	le.PutUint16(x[10:], uint16(len(body)))
	le.PutUint32(x[12:], h.Status)
	x[16], x[17] = h.TransID, h.Flags
	copy(b[BodyOffset:], body)
	return b
}

// Reply turns a request payload into its response in place: status,
// flags TRANSACTION|RESPONSE, and the body (which must fit in the
// payload; its size is set).
func Reply(payload []byte, status uint32, body []byte) error {
	if len(payload) < BodyOffset || len(body) > len(payload)-BodyOffset {
		return fmt.Errorf("%w: a %d-byte reply body in a %d-byte payload", ErrBadMessage, len(body), len(payload))
	}
	le := binary.LittleEndian
	h := payload[pipeHeaderSize:]
	le.PutUint16(h[10:], uint16(len(body)))
	le.PutUint32(h[12:], status)
	h[17] = FlagTransaction | FlagResponse
	copy(payload[BodyOffset:], body)
	return nil
}

// Negotiation lists versions: frameworks first, then the service's.
type Negotiation struct {
	Frameworks []Version
	Services   []Version
}

// EncodeNegotiation builds a negotiation body.
func EncodeNegotiation(n Negotiation) []byte {
	b := make([]byte, 8+4*(len(n.Frameworks)+len(n.Services)))
	le := binary.LittleEndian
	le.PutUint16(b, uint16(len(n.Frameworks)))
	le.PutUint16(b[2:], uint16(len(n.Services)))
	for i, v := range append(append([]Version(nil), n.Frameworks...), n.Services...) {
		le.PutUint16(b[8+4*i:], v.Major)
		le.PutUint16(b[10+4*i:], v.Minor)
	}
	return b
}

// ParseNegotiation decodes a negotiation body.
func ParseNegotiation(b []byte) (Negotiation, error) {
	if len(b) < 8 {
		return Negotiation{}, fmt.Errorf("%w: negotiation of %d bytes", ErrBadMessage, len(b))
	}
	le := binary.LittleEndian
	nf, ns := int(le.Uint16(b)), int(le.Uint16(b[2:]))
	if nf > maxCount || ns > maxCount || len(b) < 8+4*(nf+ns) {
		return Negotiation{}, fmt.Errorf("%w: %d+%d versions in %d bytes", ErrBadMessage, nf, ns, len(b))
	}
	var n Negotiation
	for i := 0; i < nf+ns; i++ {
		v := Version{le.Uint16(b[8+4*i:]), le.Uint16(b[10+4*i:])}
		if i < nf {
			n.Frameworks = append(n.Frameworks, v)
		} else {
			n.Services = append(n.Services, v)
		}
	}
	return n, nil
}

// Pick chooses, as Linux does, the first of our preferences (newest
// first) that the peer offered; ok false if none is.
func Pick(ours, offered []Version) (Version, bool) {
	for _, v := range ours {
		for _, o := range offered {
			if v == o {
				return v, true
			}
		}
	}
	return Version{}, false
}
