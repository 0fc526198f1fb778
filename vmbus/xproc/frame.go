package xproc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame kinds (see the package comment).
const (
	kindHello    byte = 1
	kindPost     byte = 2
	kindMessage  byte = 3
	kindDoorbell byte = 4
	kindGone     byte = 5
)

// MaxPayload is the largest message payload either way: the SynIC message
// payload, HV_MESSAGE_PAYLOAD_BYTE_COUNT (and chanmsg.MaxMessageSize).
const MaxPayload = 240

const (
	headerSize  = 8                       // kind, 3 reserved, u32
	helloSize   = 16                      // header + siefp_gpa
	maxFrame    = headerSize + MaxPayload // post and message
	frameBuffer = 512                     // larger than any valid frame, so truncation shows
)

// ErrBadFrame: a frame that breaks the format in the package comment.
var ErrBadFrame = errors.New("xproc: bad frame")

// guestFrame is a parsed guest-to-host frame.
type guestFrame struct {
	kind     byte
	siefpGPA uint64 // hello
	connID   uint32 // post
	payload  []byte // post; aliases the input
}

// parseGuestFrame decodes a frame the guest sent, fds aside. It is the
// host's whole parser and a pure function, so FuzzHostFrame can drive it.
func parseGuestFrame(b []byte) (guestFrame, error) {
	if len(b) < headerSize {
		return guestFrame{}, fmt.Errorf("%w: %d bytes", ErrBadFrame, len(b))
	}
	if b[1]|b[2]|b[3] != 0 {
		return guestFrame{}, fmt.Errorf("%w: reserved bytes set", ErrBadFrame)
	}
	word := binary.LittleEndian.Uint32(b[4:])
	switch kind := b[0]; kind {
	case kindHello:
		if len(b) != helloSize {
			return guestFrame{}, fmt.Errorf("%w: hello of %d bytes", ErrBadFrame, len(b))
		}
		if word != 0 {
			return guestFrame{}, fmt.Errorf("%w: hello reserved word %#x", ErrBadFrame, word)
		}
		return guestFrame{kind: kind, siefpGPA: binary.LittleEndian.Uint64(b[8:])}, nil
	case kindPost:
		if len(b) > maxFrame {
			return guestFrame{}, fmt.Errorf("%w: post payload of %d bytes, limit %d", ErrBadFrame, len(b)-headerSize, MaxPayload)
		}
		return guestFrame{kind: kind, connID: word, payload: b[headerSize:]}, nil
	default:
		return guestFrame{}, fmt.Errorf("%w: kind %d from guest", ErrBadFrame, kind)
	}
}

// appendFrame builds a frame: kind, 3 zero bytes, a u32, then body.
func appendFrame(b []byte, kind byte, word uint32, body []byte) []byte {
	b = append(b, kind, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, word)
	return append(b, body...)
}

// helloFrame builds the guest's hello.
func helloFrame(siefpGPA uint64) []byte {
	return binary.LittleEndian.AppendUint64(appendFrame(make([]byte, 0, helloSize), kindHello, 0, nil), siefpGPA)
}

// hostFrame is a parsed host-to-guest frame.
type hostFrame struct {
	kind    byte
	word    uint32 // vp (message) or connection id (doorbell, gone)
	payload []byte // message; aliases the input
}

// parseHostFrame decodes a frame the host sent, fds aside. The guest trusts
// its host, but a broken host must not crash it.
func parseHostFrame(b []byte) (hostFrame, error) {
	if len(b) < headerSize || len(b) > maxFrame {
		return hostFrame{}, fmt.Errorf("%w: %d bytes from host", ErrBadFrame, len(b))
	}
	if b[1]|b[2]|b[3] != 0 {
		return hostFrame{}, fmt.Errorf("%w: reserved bytes set", ErrBadFrame)
	}
	f := hostFrame{kind: b[0], word: binary.LittleEndian.Uint32(b[4:]), payload: b[headerSize:]}
	switch f.kind {
	case kindMessage:
	case kindDoorbell, kindGone:
		if len(f.payload) != 0 {
			return hostFrame{}, fmt.Errorf("%w: %d-byte kind %d frame", ErrBadFrame, len(b), f.kind)
		}
	default:
		return hostFrame{}, fmt.Errorf("%w: kind %d from host", ErrBadFrame, f.kind)
	}
	return f, nil
}
