// Package uart is the wire format of the VMBus serial port (the "UART"
// channel OpenVMM offers with interface type
// 8b60ccf6-709f-4c11-90b5-229c959a9e6a, instance GUIDs per COM port),
// which Partita uses as a Generation 2 partition's synthetic console.
// Package vsp/console is its host side, vsc/console its guest side.
//
// Every message is one in-band packet and starts with a 4-byte header:
// message version (1), message type, message id (u16). The guest sends
// host requests (version, get RX data) and host notifications (TX data,
// clear RX buffer); the host answers requests with host responses and
// sends guest notifications (RX data available, TX completed, modem
// status). Data moves at most 64 bytes per message: the guest waits for
// TX_COMPLETED before its next TX, and fetches input with GET_RX_DATA
// after RX_DATA_AVAILABLE until the host says no more is available.
//
// Decode is strict: the header version must be 1, the type and id known,
// the packet at least the message's size (in-band payloads are padded to
// 8 bytes; the padding is ignored), lengths within the buffer, pad bytes
// zero.
package uart

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/partita-hv/partita/vmbus/chanmsg"
)

// InterfaceType is the VMBus UART's class GUID; InstanceCOM1 the first
// port's instance GUID.
var (
	InterfaceType = chanmsg.MustParseGUID("8b60ccf6-709f-4c11-90b5-229c959a9e6a")
	InstanceCOM1  = chanmsg.MustParseGUID("700df40e-b947-4776-b839-d1b0a35af034")
)

// Version1 is the protocol version (major 1, minor 0).
const Version1 = 1 << 16

// MaxData is the most data bytes one message carries.
const MaxData = 64

// Message types.
const (
	TypeHostNotification  = 1 // guest to host, no answer
	TypeHostRequest       = 2 // guest to host, answered with a host response of the same id
	TypeHostResponse      = 3
	TypeGuestNotification = 4 // host to guest
)

// Message ids, by type.
const (
	RxClearBuffer   = 1 // host notification
	TxDataAvailable = 2 // host notification

	RxDataAvailable = 1 // guest notification
	SetModemStatus  = 2 // guest notification
	TxCompleted     = 3 // guest notification

	RequestVersion   = 1 // host request and response
	RequestGetRxData = 2 // host request and response
)

const (
	headerSize     = 4
	dataSize       = headerSize + 2 + MaxData // TX data, RX data response: 70
	versionReqSize = 8
	shortSize      = 6 // version response, modem status
)

// ErrBadMessage: a message that breaks the format.
var ErrBadMessage = errors.New("uart: bad message")

// Message is one decoded message; which fields mean anything depends on
// Type and ID.
type Message struct {
	Type uint8
	ID   uint16

	Version   uint32 // version request
	Accepted  bool   // version response
	Data      []byte // TX data, RX data response (aliases the input when decoded)
	More      bool   // RX data response: more input waits on the host
	Modem     uint8  // modem status
	Connected bool   // modem status
}

// size is a message's length on the wire, or 0 for an unknown one.
func size(typ uint8, id uint16) int {
	switch {
	case typ == TypeHostNotification && id == RxClearBuffer,
		typ == TypeGuestNotification && (id == RxDataAvailable || id == TxCompleted),
		typ == TypeHostRequest && id == RequestGetRxData:
		return headerSize
	case typ == TypeHostNotification && id == TxDataAvailable,
		typ == TypeHostResponse && id == RequestGetRxData:
		return dataSize
	case typ == TypeHostRequest && id == RequestVersion:
		return versionReqSize
	case typ == TypeHostResponse && id == RequestVersion,
		typ == TypeGuestNotification && id == SetModemStatus:
		return shortSize
	}
	return 0
}

// Decode parses a packet payload.
func Decode(b []byte) (Message, error) {
	if len(b) < headerSize {
		return Message{}, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	if b[0] != 1 {
		return Message{}, fmt.Errorf("%w: header version %d", ErrBadMessage, b[0])
	}
	m := Message{Type: b[1], ID: binary.LittleEndian.Uint16(b[2:])}
	n := size(m.Type, m.ID)
	if n == 0 {
		return Message{}, fmt.Errorf("%w: type %d id %d", ErrBadMessage, m.Type, m.ID)
	}
	if len(b) < n {
		return Message{}, fmt.Errorf("%w: type %d id %d needs %d bytes, has %d", ErrBadMessage, m.Type, m.ID, n, len(b))
	}
	switch n {
	case dataSize:
		k := int(b[4])
		if k > MaxData {
			return Message{}, fmt.Errorf("%w: %d data bytes", ErrBadMessage, k)
		}
		if m.Type == TypeHostNotification {
			if b[5+MaxData] != 0 {
				return Message{}, fmt.Errorf("%w: pad byte set", ErrBadMessage)
			}
			m.Data = b[5 : 5+k]
		} else {
			if b[5] > 1 {
				return Message{}, fmt.Errorf("%w: more_data_available %d", ErrBadMessage, b[5])
			}
			m.More = b[5] == 1
			m.Data = b[6 : 6+k]
		}
	case versionReqSize:
		m.Version = binary.LittleEndian.Uint32(b[4:])
	case shortSize:
		if m.Type == TypeHostResponse {
			if b[4] > 1 || b[5] != 0 {
				return Message{}, fmt.Errorf("%w: version response %d/%d", ErrBadMessage, b[4], b[5])
			}
			m.Accepted = b[4] == 1
		} else {
			if b[5] > 1 {
				return Message{}, fmt.Errorf("%w: is_connected %d", ErrBadMessage, b[5])
			}
			m.Modem, m.Connected = b[4], b[5] == 1
		}
	}
	return m, nil
}

// Encode builds a message; Data beyond MaxData is an error.
func Encode(m Message) ([]byte, error) {
	n := size(m.Type, m.ID)
	if n == 0 {
		return nil, fmt.Errorf("%w: type %d id %d", ErrBadMessage, m.Type, m.ID)
	}
	if len(m.Data) > MaxData {
		return nil, fmt.Errorf("%w: %d data bytes", ErrBadMessage, len(m.Data))
	}
	b := make([]byte, n)
	b[0], b[1] = 1, m.Type
	binary.LittleEndian.PutUint16(b[2:], m.ID)
	switch n {
	case dataSize:
		b[4] = byte(len(m.Data))
		if m.Type == TypeHostNotification {
			copy(b[5:], m.Data)
		} else {
			if m.More {
				b[5] = 1
			}
			copy(b[6:], m.Data)
		}
	case versionReqSize:
		binary.LittleEndian.PutUint32(b[4:], m.Version)
	case shortSize:
		if m.Type == TypeHostResponse {
			if m.Accepted {
				b[4] = 1
			}
		} else {
			b[4] = m.Modem
			if m.Connected {
				b[5] = 1
			}
		}
	}
	return b, nil
}
