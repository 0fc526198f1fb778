package chanmsg

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// GUID is a GUID as it sits on the wire in VMBus messages: Windows
// "mixed-endian" order, where the first three groups (Data1 u32, Data2 u16,
// Data3 u16) are little-endian and the last eight bytes follow in written
// order. The string f8615163-df3e-46c5-913f-f2d2f965ed0e is therefore the
// bytes 63 51 61 f8 3e df c5 46 91 3f f2 d2 f9 65 ed 0e.
type GUID [16]byte

// ParseGUID parses the canonical 36-character form
// xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, in either case, optionally enclosed
// in braces as Windows prints it.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	t := s
	if len(t) == 38 && t[0] == '{' && t[37] == '}' {
		t = t[1:37]
	}
	if len(t) != 36 || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-' {
		return g, fmt.Errorf("chanmsg: invalid GUID %q", s)
	}
	var raw [16]byte // the 32 hex digits in written order
	for i, f := range [...]struct{ from, to, at int }{
		{0, 8, 0}, {9, 13, 4}, {14, 18, 6}, {19, 23, 8}, {24, 36, 10},
	} {
		if _, err := hex.Decode(raw[f.at:], []byte(t[f.from:f.to])); err != nil {
			return g, fmt.Errorf("chanmsg: invalid GUID %q: group %d: %v", s, i+1, err)
		}
	}
	binary.LittleEndian.PutUint32(g[0:], binary.BigEndian.Uint32(raw[0:]))
	binary.LittleEndian.PutUint16(g[4:], binary.BigEndian.Uint16(raw[4:]))
	binary.LittleEndian.PutUint16(g[6:], binary.BigEndian.Uint16(raw[6:]))
	copy(g[8:], raw[8:])
	return g, nil
}

// MustParseGUID is ParseGUID for constants; it panics if s is not a GUID.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the canonical lowercase form,
// e.g. f8615163-df3e-46c5-913f-f2d2f965ed0e.
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:]),
		binary.LittleEndian.Uint16(g[4:]),
		binary.LittleEndian.Uint16(g[6:]),
		g[8:10], g[10:16])
}
