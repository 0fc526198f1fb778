// Package xproc carries VMBus between a host process and a guest process on
// one machine, the way a partition's worker and root will once KVM is in
// the picture:
//
//   - guest memory is one memfd that both processes map (package
//     partition/memory);
//   - the message path — HvPostMessage from the guest, SynIC SINT 2
//     messages from the host — is a Unix SOCK_SEQPACKET socket pair;
//   - a guest-to-host doorbell (HvSignalEvent on a connection id) is an
//     eventfd the host owns and passes to the guest (on KVM: an ioeventfd);
//   - a host-to-guest channel interrupt sets the channel's flag in the
//     guest's SynIC event-flags page (in guest memory) and, when the flag
//     went from 0 to 1, writes the guest's one interrupt eventfd (on KVM:
//     an irqfd).
//
// Frames on the socket, little-endian, kind in byte 0, bytes 1-3 zero:
//
//	hello     guest->host  +8 siefp_gpa u64             one fd: the guest's interrupt eventfd
//	post      guest->host  +4 connection_id u32, +8 payload (<= 240 bytes)
//	message   host->guest  +4 vp u32, +8 payload (<= 240 bytes)
//	doorbell  host->guest  +4 connection_id u32         one fd: the doorbell eventfd
//	gone      host->guest  +4 connection_id u32         the doorbell was closed
//
// The host treats every guest frame as hostile: a frame that does not
// parse, or arrives with fds it should not carry, is counted and dropped
// (its fds closed), and the host goes on.
package xproc

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/partita-hv/partita/vmbus/chanmsg"
)

// Frame kinds.
const (
	kindHello    byte = 1
	kindPost     byte = 2
	kindMessage  byte = 3
	kindDoorbell byte = 4
	kindGone     byte = 5
)

const (
	helloSize   = 16
	postHeader  = 8
	maxFrame    = postHeader + chanmsg.MaxMessageSize
	bellSize    = 8
	frameBuffer = 512 // larger than any valid frame, so truncation is visible
)

// ErrBadFrame: a frame that breaks the format above.
var ErrBadFrame = errors.New("xproc: bad frame")

// guestFrame is a parsed guest-to-host frame.
type guestFrame struct {
	kind     byte
	siefpGPA uint64 // hello
	connID   uint32 // post
	payload  []byte // post; aliases the input
}

// parseGuestFrame decodes a frame the guest sent, without its fds.
func parseGuestFrame(b []byte) (guestFrame, error) {
	if len(b) < 8 {
		return guestFrame{}, fmt.Errorf("%w: %d bytes", ErrBadFrame, len(b))
	}
	if b[1]|b[2]|b[3] != 0 {
		return guestFrame{}, fmt.Errorf("%w: reserved bytes set", ErrBadFrame)
	}
	f := guestFrame{kind: b[0]}
	switch f.kind {
	case kindHello:
		if len(b) != helloSize {
			return guestFrame{}, fmt.Errorf("%w: hello of %d bytes", ErrBadFrame, len(b))
		}
		f.siefpGPA = binary.LittleEndian.Uint64(b[8:])
	case kindPost:
		if len(b) > maxFrame {
			return guestFrame{}, fmt.Errorf("%w: post of %d bytes, payload limit %d", ErrBadFrame, len(b), chanmsg.MaxMessageSize)
		}
		f.connID = binary.LittleEndian.Uint32(b[4:])
		f.payload = b[postHeader:]
	default:
		return guestFrame{}, fmt.Errorf("%w: kind %d from guest", ErrBadFrame, f.kind)
	}
	return f, nil
}

// appendFrame builds a frame: kind, a u32 at +4, then body.
func appendFrame(b []byte, kind byte, word uint32, body []byte) []byte {
	b = append(b, kind, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, word)
	return append(b, body...)
}

// hostFrame is a parsed host-to-guest frame. The guest trusts its host, but
// still checks lengths so a broken host cannot crash it.
type hostFrame struct {
	kind    byte
	word    uint32 // vp or connection id
	payload []byte
}

func parseHostFrame(b []byte) (hostFrame, error) {
	if len(b) < 8 || len(b) > maxFrame {
		return hostFrame{}, fmt.Errorf("%w: %d bytes from host", ErrBadFrame, len(b))
	}
	return hostFrame{kind: b[0], word: binary.LittleEndian.Uint32(b[4:]), payload: b[8:]}, nil
}
