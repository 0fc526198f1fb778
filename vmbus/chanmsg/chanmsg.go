// Package chanmsg owns the wire format of VMBus channel-management
// (control-plane) messages, in Hyper-V's numbering and layout: offers,
// channel open and close, GPADL setup and teardown, version negotiation and
// unload. These messages are carried in SynIC messages, whose payload is at
// most 240 bytes (MaxMessageSize): a guest posts them with HvPostMessage,
// a host delivers them in the SINT 2 slot of the guest's message page.
//
// Every message starts with the same 8-byte header, then a body whose
// layout depends on the type, all little-endian and packed:
//
//	+0  msgtype  u32  Type (1 = OFFERCHANNEL ... 24 = MODIFYCHANNEL_RESPONSE)
//	+4  padding  u32  zero
//	+8  body
//
// Each message type is a Go struct implementing Message; the struct comment
// names the Hyper-V structure it mirrors and field comments give wire
// offsets counted from the start of the header. AppendTo encodes, Decode
// decodes. Decode treats its input as hostile: it checks every length
// against the bytes it was given, never panics, and allocates at most in
// proportion to the input.
//
// A GPADL (guest physical address descriptor list) usually does not fit in
// one message, so the guest sends a GPADL_HEADER followed by GPADL_BODY
// messages that continue the same range list; SplitGPADL builds them and a
// GPADLAssembler puts them back together on the host:
//
//	guest                                   host
//	GPADL_HEADER  relid 5, gpadl 0xE1E10,   NewGPADLAssembler(h)
//	              buflen 8+8*100, 27 words
//	GPADL_BODY    gpadl 0xE1E10, 28 words   Add(b) -> done=false
//	GPADL_BODY    gpadl 0xE1E10, 28 words   Add(b) -> done=false
//	GPADL_BODY    gpadl 0xE1E10, 18 words   Add(b) -> done=true, Ranges()
//	                                        GPADL_CREATED relid 5, gpadl 0xE1E10, status 0
//
// Messages are plain values and an assembler has no locks: each is used by
// one goroutine at a time.
package chanmsg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxMessageSize is the largest control message, header included: the
// SynIC message payload (HV_MESSAGE_PAYLOAD_BYTE_COUNT).
const MaxMessageSize = 240

// HeaderSize is the size of the header every control message starts with
// (Hyper-V vmbus_channel_message_header).
const HeaderSize = 8

// Type is a channel-management message type (Hyper-V
// vmbus_channel_message_type).
type Type uint32

// Message types in Hyper-V's numbering. Types 18 to 20 are reserved (openvmm
// uses them for reserved channels); Decode reports them as ErrUnknownType.
const (
	TypeOfferChannel          Type = 1  // host -> guest
	TypeRescindChannelOffer   Type = 2  // host -> guest
	TypeRequestOffers         Type = 3  // guest -> host
	TypeAllOffersDelivered    Type = 4  // host -> guest
	TypeOpenChannel           Type = 5  // guest -> host
	TypeOpenChannelResult     Type = 6  // host -> guest
	TypeCloseChannel          Type = 7  // guest -> host
	TypeGPADLHeader           Type = 8  // guest -> host
	TypeGPADLBody             Type = 9  // guest -> host
	TypeGPADLCreated          Type = 10 // host -> guest
	TypeGPADLTeardown         Type = 11 // guest -> host
	TypeGPADLTorndown         Type = 12 // host -> guest
	TypeRelIDReleased         Type = 13 // guest -> host
	TypeInitiateContact       Type = 14 // guest -> host
	TypeVersionResponse       Type = 15 // host -> guest
	TypeUnload                Type = 16 // guest -> host
	TypeUnloadResponse        Type = 17 // host -> guest
	TypeTLConnectRequest      Type = 21 // guest -> host, protocol >= 4.0
	TypeModifyChannel         Type = 22 // guest -> host, protocol >= 4.1
	TypeTLConnectResult       Type = 23 // host -> guest, protocol >= 4.1
	TypeModifyChannelResponse Type = 24 // host -> guest, protocol >= 5.3
)

var typeNames = [...]string{
	TypeOfferChannel:          "offer-channel",
	TypeRescindChannelOffer:   "rescind-channel-offer",
	TypeRequestOffers:         "request-offers",
	TypeAllOffersDelivered:    "all-offers-delivered",
	TypeOpenChannel:           "open-channel",
	TypeOpenChannelResult:     "open-channel-result",
	TypeCloseChannel:          "close-channel",
	TypeGPADLHeader:           "gpadl-header",
	TypeGPADLBody:             "gpadl-body",
	TypeGPADLCreated:          "gpadl-created",
	TypeGPADLTeardown:         "gpadl-teardown",
	TypeGPADLTorndown:         "gpadl-torndown",
	TypeRelIDReleased:         "relid-released",
	TypeInitiateContact:       "initiate-contact",
	TypeVersionResponse:       "version-response",
	TypeUnload:                "unload",
	TypeUnloadResponse:        "unload-response",
	TypeTLConnectRequest:      "tl-connect-request",
	TypeModifyChannel:         "modify-channel",
	TypeTLConnectResult:       "tl-connect-result",
	TypeModifyChannelResponse: "modify-channel-response",
}

func (t Type) String() string {
	if int64(t) < int64(len(typeNames)) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Message is one control message.
type Message interface {
	Type() Type
	// AppendTo appends the wire encoding (8-byte header {msgtype u32,
	// padding u32 = 0} + body) to b.
	AppendTo(b []byte) []byte
}

// Errors returned by Decode, the GPADL assembler and SplitGPADL, wrapped
// with the message type and the offending values.
var (
	// ErrTooLarge: a message longer than MaxMessageSize, or a GPADL that
	// cannot be expressed in the messages' fields.
	ErrTooLarge = errors.New("chanmsg: message too large")
	// ErrTooShort: fewer bytes than the message type's fixed part.
	ErrTooShort = errors.New("chanmsg: message too short")
	// ErrUnknownType: msgtype is 0, reserved (18-20) or above 24.
	ErrUnknownType = errors.New("chanmsg: unknown message type")
	// ErrMalformed: the lengths or range list inside a GPADL message do not
	// add up, or a GPADL range is invalid.
	ErrMalformed = errors.New("chanmsg: malformed message")
	// ErrGPADLMismatch: a GPADL_BODY handed to an assembler for a
	// different GPADL id.
	ErrGPADLMismatch = errors.New("chanmsg: gpadl body for another gpadl")
)

// decoder is a Message that can fill itself from a whole message, header
// included, whose length Decode has checked against the type's minimum.
type decoder interface {
	Message
	decode(b []byte) error
}

// kinds holds, per type, the minimum message length (header included) and
// a constructor. For every type but GPADL_HEADER and GPADL_BODY the minimum
// is the whole message; longer messages are accepted (later protocol
// versions append fields) and the extra bytes ignored.
var kinds = [...]struct {
	size  int
	alloc func() decoder
}{
	TypeOfferChannel:          {offerChannelSize, func() decoder { return new(OfferChannel) }},
	TypeRescindChannelOffer:   {12, func() decoder { return new(RescindChannelOffer) }},
	TypeRequestOffers:         {8, func() decoder { return new(RequestOffers) }},
	TypeAllOffersDelivered:    {8, func() decoder { return new(AllOffersDelivered) }},
	TypeOpenChannel:           {openChannelSize, func() decoder { return new(OpenChannel) }},
	TypeOpenChannelResult:     {20, func() decoder { return new(OpenChannelResult) }},
	TypeCloseChannel:          {12, func() decoder { return new(CloseChannel) }},
	TypeGPADLHeader:           {gpadlHeaderFixed, func() decoder { return new(GPADLHeader) }},
	TypeGPADLBody:             {gpadlBodyFixed, func() decoder { return new(GPADLBody) }},
	TypeGPADLCreated:          {20, func() decoder { return new(GPADLCreated) }},
	TypeGPADLTeardown:         {16, func() decoder { return new(GPADLTeardown) }},
	TypeGPADLTorndown:         {12, func() decoder { return new(GPADLTorndown) }},
	TypeRelIDReleased:         {12, func() decoder { return new(RelIDReleased) }},
	TypeInitiateContact:       {40, func() decoder { return new(InitiateContact) }},
	TypeVersionResponse:       {16, func() decoder { return new(VersionResponse) }},
	TypeUnload:                {8, func() decoder { return new(Unload) }},
	TypeUnloadResponse:        {8, func() decoder { return new(UnloadResponse) }},
	TypeTLConnectRequest:      {tlConnectRequestSize, func() decoder { return new(TLConnectRequest) }},
	TypeModifyChannel:         {16, func() decoder { return new(ModifyChannel) }},
	TypeTLConnectResult:       {44, func() decoder { return new(TLConnectResult) }},
	TypeModifyChannelResponse: {16, func() decoder { return new(ModifyChannelResponse) }},
}

// Decode decodes one control message, header included, as received in a
// SynIC message payload. It returns a pointer to the message struct
// (*OfferChannel, *GPADLHeader, ...).
//
// Fixed-size messages may be longer than their layout (up to
// MaxMessageSize): senders of later protocol versions append fields, and
// some transports round the payload up to 8 bytes. The extra bytes are
// ignored, as are the header's padding word and the reserved bits of
// MonitorAllocated and IsDedicatedInterrupt; so re-encoding a decoded
// message gives back the message's fields, not necessarily its bytes.
// GPADL_HEADER and GPADL_BODY have no slack: their length says how many
// range-list words they carry and must be exact.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxMessageSize)
	}
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, header needs %d", ErrTooShort, len(b), HeaderSize)
	}
	t := Type(binary.LittleEndian.Uint32(b))
	if int64(t) >= int64(len(kinds)) || kinds[t].alloc == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, uint32(t))
	}
	k := kinds[t]
	if len(b) < k.size {
		return nil, fmt.Errorf("%w: %v is %d bytes, needs %d", ErrTooShort, t, len(b), k.size)
	}
	m := k.alloc()
	if err := m.decode(b); err != nil {
		return nil, err
	}
	return m, nil
}

// appendHeader appends the common message header.
func appendHeader(b []byte, t Type) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(t))
	return binary.LittleEndian.AppendUint32(b, 0)
}

func appendU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

func u16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func u32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func u64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

func guid(b []byte, off int) GUID { return GUID(b[off : off+16]) }

func bit0(v bool) byte {
	if v {
		return 1
	}
	return 0
}
