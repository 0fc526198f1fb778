package ic

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf16"
)

// Service versions, newest first.
var (
	Frameworks        = []Version{{3, 0}, {1, 0}}
	HeartbeatVersions = []Version{{3, 0}, {1, 0}}
	ShutdownVersions  = []Version{{3, 2}, {3, 1}, {3, 0}, {1, 0}}
	TimeSyncVersions  = []Version{{4, 0}, {3, 0}, {1, 0}}
	KVPVersions       = []Version{{4, 0}, {3, 0}, {1, 0}}
)

// Heartbeat body: sequence number, application state, reserved.
const HeartbeatSize = 16

// Application states a guest reports in its heartbeat.
const (
	AppUnknown  = 0
	AppHealthy  = 1
	AppCritical = 2
	AppStopped  = 3
)

// Heartbeat is a heartbeat body.
type Heartbeat struct {
	Seq      uint64
	AppState uint32
}

func (h Heartbeat) Encode() []byte {
	b := make([]byte, HeartbeatSize)
	binary.LittleEndian.PutUint64(b, h.Seq)
	binary.LittleEndian.PutUint32(b[8:], h.AppState)
	return b
}

// ParseHeartbeat needs the sequence number; the application state is
// optional (Linux sends 8 bytes and reserved words).
func ParseHeartbeat(b []byte) (Heartbeat, error) {
	if len(b) < 8 {
		return Heartbeat{}, fmt.Errorf("%w: heartbeat of %d bytes", ErrBadMessage, len(b))
	}
	h := Heartbeat{Seq: binary.LittleEndian.Uint64(b)}
	if len(b) >= 12 {
		h.AppState = binary.LittleEndian.Uint32(b[8:])
	}
	return h, nil
}

// Shutdown body: reason, timeout, flags, a 2048-byte message.
const ShutdownSize = 12 + 2048

// Shutdown flags.
const (
	ShutdownForce   = 1
	ShutdownRestart = 2
)

// ReasonPlanned is SHTDN_REASON_FLAG_PLANNED.
const ReasonPlanned = 0x80000000

// Shutdown is a shutdown request.
type Shutdown struct {
	Reason, TimeoutSeconds, Flags uint32
	Message                       string // ASCII, at most 2047 bytes
}

func (s Shutdown) Encode() []byte {
	b := make([]byte, ShutdownSize)
	le := binary.LittleEndian
	le.PutUint32(b, s.Reason)
	le.PutUint32(b[4:], s.TimeoutSeconds)
	le.PutUint32(b[8:], s.Flags)
	copy(b[12:12+2047], s.Message)
	return b
}

func ParseShutdown(b []byte) (Shutdown, error) {
	if len(b) < ShutdownSize {
		return Shutdown{}, fmt.Errorf("%w: shutdown of %d bytes", ErrBadMessage, len(b))
	}
	le := binary.LittleEndian
	msg := b[12:ShutdownSize]
	for i, c := range msg {
		if c == 0 {
			msg = msg[:i]
			break
		}
	}
	return Shutdown{Reason: le.Uint32(b), TimeoutSeconds: le.Uint32(b[4:]), Flags: le.Uint32(b[8:]), Message: string(msg)}, nil
}

// Time sync (version 4) body: parent time, reference time, flags,
// leap flags, stratum, reserved.
const TimeSyncSize = 24

// Time sync flags.
const (
	TimeProbe  = 0
	TimeSync   = 1 // set the clock
	TimeSample = 2 // a hint
)

// epoch1601 is 1970-01-01 in 100 ns units since 1601-01-01.
const epoch1601 = 116444736000000000

// TimeSyncMsg is a version 4 time sample.
type TimeSyncMsg struct {
	Parent    time.Time // the host's UTC clock
	Reference uint64    // the guest's reference counter at that moment (100 ns)
	Flags     uint8
}

func (t TimeSyncMsg) Encode() []byte {
	b := make([]byte, TimeSyncSize)
	binary.LittleEndian.PutUint64(b, uint64(t.Parent.UnixNano()/100+epoch1601))
	binary.LittleEndian.PutUint64(b[8:], t.Reference)
	b[16] = t.Flags
	return b
}

func ParseTimeSync(b []byte) (TimeSyncMsg, error) {
	if len(b) < 17 {
		return TimeSyncMsg{}, fmt.Errorf("%w: time sync of %d bytes", ErrBadMessage, len(b))
	}
	parent := int64(binary.LittleEndian.Uint64(b)) - epoch1601
	return TimeSyncMsg{Parent: time.Unix(0, 0).Add(time.Duration(parent) * 100), Reference: binary.LittleEndian.Uint64(b[8:]), Flags: b[16]}, nil
}

// KVP operations and pools.
const (
	KVPGet       = 0
	KVPSet       = 1
	KVPDelete    = 2
	KVPEnumerate = 3

	PoolExternal = 0 // written by the host, read by the guest
	PoolGuest    = 1 // written by the guest, read by the host
	PoolAuto     = 2 // the guest's intrinsic items
)

// KVP value types.
const (
	RegSZ  = 1
	RegU32 = 4
	RegU64 = 8
)

// KVP layout: op, pool, pad, then per operation; a value record is type,
// key size, value size, key[512], value[2048].
const (
	kvpKeyMax   = 512
	kvpValueMax = 2048
	kvpRecord   = 12 + kvpKeyMax + kvpValueMax
	// KVPSize is the body size of every KVP message: an enumerate (the
	// largest of get, set, delete and enumerate).
	KVPSize = 8 + kvpRecord
)

// KVP is one KVP message.
type KVP struct {
	Op, Pool uint8
	Index    uint32 // enumerate
	Key      string
	Value    string // REG_U32 and REG_U64 values in decimal
}

// Encode builds a KVP body of KVPSize bytes. Keys and string values are
// UTF-16LE with a terminator, and must fit.
func (k KVP) Encode() ([]byte, error) {
	b := make([]byte, KVPSize)
	b[0], b[1] = k.Op, k.Pool
	rec := b[4:]
	le := binary.LittleEndian
	switch k.Op {
	case KVPEnumerate:
		le.PutUint32(b[4:], k.Index)
		rec = b[8:]
	case KVPDelete:
		key := utf16z(k.Key)
		if len(key) > kvpKeyMax {
			return nil, fmt.Errorf("ic: key of %d bytes", len(key))
		}
		le.PutUint32(b[4:], uint32(len(key)))
		copy(b[8:], key)
		return b, nil
	}
	key, val := utf16z(k.Key), utf16z(k.Value)
	if k.Key == "" && k.Op == KVPEnumerate {
		key, val = nil, nil // a request: the guest fills the record
	}
	if len(key) > kvpKeyMax || len(val) > kvpValueMax {
		return nil, fmt.Errorf("ic: key or value too long (%d, %d bytes)", len(key), len(val))
	}
	le.PutUint32(rec, RegSZ)
	le.PutUint32(rec[4:], uint32(len(key)))
	le.PutUint32(rec[8:], uint32(len(val)))
	copy(rec[12:], key)
	copy(rec[12+kvpKeyMax:], val)
	return b, nil
}

// ParseKVP decodes a KVP body.
func ParseKVP(b []byte) (KVP, error) {
	if len(b) < 4 {
		return KVP{}, fmt.Errorf("%w: KVP of %d bytes", ErrBadMessage, len(b))
	}
	k := KVP{Op: b[0], Pool: b[1]}
	if k.Pool > 4 {
		return KVP{}, fmt.Errorf("%w: KVP pool %d", ErrBadMessage, k.Pool)
	}
	le := binary.LittleEndian
	var rec []byte
	switch k.Op {
	case KVPGet, KVPSet:
		rec = b[4:]
	case KVPEnumerate:
		if len(b) < 8 {
			return KVP{}, fmt.Errorf("%w: KVP enumerate of %d bytes", ErrBadMessage, len(b))
		}
		k.Index = le.Uint32(b[4:])
		rec = b[8:]
	case KVPDelete:
		if len(b) < 8+kvpKeyMax {
			return KVP{}, fmt.Errorf("%w: KVP delete of %d bytes", ErrBadMessage, len(b))
		}
		n := le.Uint32(b[4:])
		if n > kvpKeyMax {
			return KVP{}, fmt.Errorf("%w: KVP key of %d bytes", ErrBadMessage, n)
		}
		k.Key = fromUTF16z(b[8 : 8+n])
		return k, nil
	default:
		return KVP{}, fmt.Errorf("%w: KVP operation %d", ErrBadMessage, k.Op)
	}
	if len(rec) < kvpRecord {
		return KVP{}, fmt.Errorf("%w: KVP record of %d bytes", ErrBadMessage, len(rec))
	}
	typ, ks, vs := le.Uint32(rec), le.Uint32(rec[4:]), le.Uint32(rec[8:])
	if ks > kvpKeyMax || vs > kvpValueMax {
		return KVP{}, fmt.Errorf("%w: KVP key %d or value %d bytes", ErrBadMessage, ks, vs)
	}
	k.Key = fromUTF16z(rec[12 : 12+ks])
	val := rec[12+kvpKeyMax : 12+kvpKeyMax+vs]
	switch typ {
	case RegSZ, 0:
		k.Value = fromUTF16z(val)
	case RegU32:
		if vs < 4 {
			return KVP{}, fmt.Errorf("%w: REG_U32 of %d bytes", ErrBadMessage, vs)
		}
		k.Value = fmt.Sprint(le.Uint32(val))
	case RegU64:
		if vs < 8 {
			return KVP{}, fmt.Errorf("%w: REG_U64 of %d bytes", ErrBadMessage, vs)
		}
		k.Value = fmt.Sprint(le.Uint64(val))
	default:
		return KVP{}, fmt.Errorf("%w: KVP value type %d", ErrBadMessage, typ)
	}
	return k, nil
}

// utf16z encodes s as UTF-16LE with a terminator; nil for "".
func utf16z(s string) []byte {
	if s == "" {
		return nil
	}
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u)+2)
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// fromUTF16z decodes UTF-16LE up to a terminator.
func fromUTF16z(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
