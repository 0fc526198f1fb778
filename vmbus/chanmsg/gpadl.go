package chanmsg

import (
	"encoding/binary"
	"fmt"

	"github.com/partita-hv/partita/vmbus/packet"
)

// PageSize is the Hyper-V page size that PFNs refer to (PFN = GPA >> 12),
// whatever the guest's own page size.
const PageSize = 4096

// GPADL message geometry.
//
// A GPADL's range list is a sequence of 8-byte words: for each range, one
// word holding byte_count (low 32 bits) and byte_offset (high 32 bits),
// then that range's PFNs. The header message carries the list's first words
// after its 20-byte fixed part, each body the next ones after its 16-byte
// fixed part.
const (
	gpadlHeaderFixed    = 20
	gpadlBodyFixed      = 16
	gpadlHeaderMaxWords = (MaxMessageSize - gpadlHeaderFixed) / 8 // 27: one range header + 26 PFNs
	gpadlBodyMaxWords   = (MaxMessageSize - gpadlBodyFixed) / 8   // 28 PFNs

	// maxRangeWords bounds a whole range list: range_buflen is a u16 and a
	// multiple of 8, so at most 65528 bytes = 8191 words.
	maxRangeWords = 0xFFFF / 8
)

// MaxGPADLPFNs is the most PFNs one GPADL can describe: the 8191 words a
// u16 range_buflen allows, less one range header. That is 32 MiB less
// 8 KiB of guest memory (Linux keeps its largest buffer, netvsc's receive
// buffer, at 31 MiB). The limit comes from the wire format itself, so a
// GPADLAssembler never holds more than 64 KiB of range list, however
// hostile the guest; it also grows only as bodies arrive.
const MaxGPADLPFNs = maxRangeWords - 1

// GPARange is one range of a GPADL (Hyper-V gpa_range), the same wire
// structure that GPA-direct packets carry.
type GPARange = packet.GPARange

// pfnCount is the number of pages a range with these counts spans.
func pfnCount(byteOffset, byteCount uint32) int { return packet.PFNCount(byteOffset, byteCount) }

// GPADLHeader starts a GPADL (guest to host, 20 bytes plus up to 27 words
// of range list). It mirrors Hyper-V vmbus_channel_gpadl_header.
//
// The range list is kept flat, as the wire carries it: Data holds the words
// present in this message, with range headers encoded as
// byte_count | byte_offset<<32, and WordsInBodies says how many more the
// GPADL_BODY messages must bring. This is what a host needs to assemble a
// GPADL without assumptions about where the sender split it: Linux sends a
// single range and puts only PFNs in bodies, but openvmm's client splits the
// flat word array wherever 27 words end, so a range header may arrive in a
// body. Decode validates the prefix it has (range headers present, counts
// that fit range_buflen); GPADLAssembler checks the whole list once
// complete and returns it as []GPARange.
type GPADLHeader struct {
	ChildRelID uint32 // +8  channel the GPADL belongs to
	GPADL      uint32 // +12 id chosen by the guest
	// RangeBufLen is the size in bytes of the whole range list, across the
	// header and all bodies: 8 per range header plus 8 per PFN.
	RangeBufLen uint16 // +16
	RangeCount  uint16 // +18 number of ranges in the list
	// Data holds the first words of the range list. Note that it starts at
	// +20, so the words are not 8-aligned within the message.
	Data []uint64 // +20
}

func (*GPADLHeader) Type() Type { return TypeGPADLHeader }

// AppendTo encodes the message as it stands; it does not check that Data
// fits in MaxMessageSize or agrees with RangeBufLen. SplitGPADL builds
// headers that do.
func (m *GPADLHeader) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeGPADLHeader)
	b = appendU32(b, m.ChildRelID)
	b = appendU32(b, m.GPADL)
	b = appendU16(b, m.RangeBufLen)
	b = appendU16(b, m.RangeCount)
	for _, w := range m.Data {
		b = appendU64(b, w)
	}
	return b
}

// WordsInBodies is the number of range-list words the GPADL_BODY messages
// still have to bring, according to RangeBufLen.
func (m *GPADLHeader) WordsInBodies() int {
	return max(int(m.RangeBufLen)/8-len(m.Data), 0)
}

func (m *GPADLHeader) decode(b []byte) error {
	m.ChildRelID = u32(b, 8)
	m.GPADL = u32(b, 12)
	m.RangeBufLen = u16(b, 16)
	m.RangeCount = u16(b, 18)
	data, err := decodeWords(b[gpadlHeaderFixed:])
	if err != nil {
		return fmt.Errorf("%v gpadl %#x: %w", TypeGPADLHeader, m.GPADL, err)
	}
	m.Data = data
	return m.check()
}

// check validates the header's counts and the part of the range list it
// carries.
func (m *GPADLHeader) check() error {
	total := int(m.RangeBufLen) / 8
	var err error
	switch {
	case m.RangeCount == 0:
		err = fmt.Errorf("%w: rangecount 0", ErrMalformed)
	case m.RangeBufLen%8 != 0:
		err = fmt.Errorf("%w: range_buflen %d not a multiple of 8", ErrMalformed, m.RangeBufLen)
	case len(m.Data) > total:
		err = fmt.Errorf("%w: %d words present, range_buflen %d allows %d", ErrMalformed, len(m.Data), m.RangeBufLen, total)
	default:
		_, err = walkRanges(m.Data, int(m.RangeCount), total, false)
	}
	if err != nil {
		return fmt.Errorf("%v gpadl %#x: %w", TypeGPADLHeader, m.GPADL, err)
	}
	return nil
}

// GPADLBody continues a GPADL's range list (guest to host, 16 bytes plus up
// to 28 words). It mirrors Hyper-V vmbus_channel_gpadl_body.
type GPADLBody struct {
	// MsgNumber is left 0 by Linux and called reserved by openvmm; it is
	// carried but not interpreted.
	MsgNumber uint32 // +8
	GPADL     uint32 // +12
	// Data holds the next words of the range list: usually PFNs, but a
	// multi-range list may carry range headers here too (see GPADLHeader).
	Data []uint64 // +16
}

func (*GPADLBody) Type() Type { return TypeGPADLBody }

// AppendTo encodes the message as it stands; it does not check that Data
// fits in MaxMessageSize.
func (m *GPADLBody) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeGPADLBody)
	b = appendU32(b, m.MsgNumber)
	b = appendU32(b, m.GPADL)
	for _, w := range m.Data {
		b = appendU64(b, w)
	}
	return b
}

func (m *GPADLBody) decode(b []byte) error {
	m.MsgNumber = u32(b, 8)
	m.GPADL = u32(b, 12)
	data, err := decodeWords(b[gpadlBodyFixed:])
	if err != nil {
		return fmt.Errorf("%v gpadl %#x: %w", TypeGPADLBody, m.GPADL, err)
	}
	m.Data = data
	return nil
}

// decodeWords decodes a range-list fragment, which must be whole words.
func decodeWords(p []byte) ([]uint64, error) {
	if len(p)%8 != 0 {
		return nil, fmt.Errorf("%w: %d bytes of range list, not a multiple of 8", ErrMalformed, len(p))
	}
	if len(p) == 0 {
		return nil, nil
	}
	w := make([]uint64, len(p)/8)
	for i := range w {
		w[i] = binary.LittleEndian.Uint64(p[8*i:])
	}
	return w, nil
}

// walkRanges checks a range list, or the prefix data of one, against a
// header's promise of count ranges in total words. Each range header must
// have byte_offset < PageSize and byte_count > 0, and the PFNs it implies
// must fit; once all count headers are seen the list must end exactly at
// total, and ranges not yet seen need at least two words each. If build is
// set, data must be the whole list and the ranges are returned, their PFNs
// sharing data's storage.
func walkRanges(data []uint64, count, total int, build bool) ([]GPARange, error) {
	if count > total/2 {
		return nil, fmt.Errorf("%w: %d ranges cannot fit in %d words", ErrMalformed, count, total)
	}
	var ranges []GPARange
	if build {
		ranges = make([]GPARange, 0, count)
	}
	pos, seen := 0, 0
	for pos < len(data) {
		if seen == count {
			return nil, fmt.Errorf("%w: words after the last of %d ranges", ErrMalformed, count)
		}
		bc, bo := uint32(data[pos]), uint32(data[pos]>>32)
		if bc == 0 || bo >= PageSize {
			return nil, fmt.Errorf("%w: range %d byte_count %d byte_offset %d", ErrMalformed, seen, bc, bo)
		}
		n := pfnCount(bo, bc)
		pos++
		if n > total-pos {
			return nil, fmt.Errorf("%w: range %d needs %d pfns, range_buflen leaves %d", ErrMalformed, seen, n, total-pos)
		}
		if build {
			ranges = append(ranges, GPARange{ByteCount: bc, ByteOffset: bo, PFNs: data[pos : pos+n : pos+n]})
		}
		pos += n
		seen++
	}
	// pos may lie beyond data when the last range's PFNs continue in bodies.
	switch left := count - seen; {
	case left == 0 && pos != total:
		return nil, fmt.Errorf("%w: %d ranges end at word %d, range_buflen says %d", ErrMalformed, count, pos, total)
	case 2*left > total-pos:
		return nil, fmt.Errorf("%w: %d more ranges cannot fit in %d words", ErrMalformed, left, total-pos)
	}
	return ranges, nil
}

// SplitGPADL encodes ranges as the GPADL_HEADER and GPADL_BODY messages a
// guest sends: the header carries the first 27 words of the range list (with
// one range, its header and 26 PFNs, as Linux sends it), each body up to 28
// more. Bodies have MsgNumber 0, as Linux sends them.
//
// Every range must be valid (ByteCount > 0, ByteOffset < PageSize, exactly
// the PFNs the two imply: ErrMalformed otherwise). The whole list must fit
// in a u16 range_buflen, and all range headers must land in the header
// message, since hosts other than openvmm may expect them there (ErrTooLarge
// otherwise).
func SplitGPADL(childRelID, gpadl uint32, ranges []GPARange) (*GPADLHeader, []*GPADLBody, error) {
	if len(ranges) == 0 {
		return nil, nil, fmt.Errorf("%w: gpadl %#x has no ranges", ErrMalformed, gpadl)
	}
	n, lastHeader := 0, 0
	for i, r := range ranges {
		if r.ByteCount == 0 || r.ByteOffset >= PageSize || len(r.PFNs) != pfnCount(r.ByteOffset, r.ByteCount) {
			return nil, nil, fmt.Errorf("%w: gpadl %#x range %d: byte_count %d byte_offset %d with %d pfns",
				ErrMalformed, gpadl, i, r.ByteCount, r.ByteOffset, len(r.PFNs))
		}
		lastHeader = n
		n += 1 + len(r.PFNs)
		if n > maxRangeWords {
			return nil, nil, fmt.Errorf("%w: gpadl %#x range list exceeds %d words", ErrTooLarge, gpadl, maxRangeWords)
		}
	}
	if lastHeader >= gpadlHeaderMaxWords {
		return nil, nil, fmt.Errorf("%w: gpadl %#x: range %d header at word %d, beyond the %d the header message holds",
			ErrTooLarge, gpadl, len(ranges)-1, lastHeader, gpadlHeaderMaxWords)
	}

	words := make([]uint64, 0, n)
	for _, r := range ranges {
		words = append(words, uint64(r.ByteCount)|uint64(r.ByteOffset)<<32)
		words = append(words, r.PFNs...)
	}
	k := min(n, gpadlHeaderMaxWords)
	h := &GPADLHeader{
		ChildRelID:  childRelID,
		GPADL:       gpadl,
		RangeBufLen: uint16(8 * n),
		RangeCount:  uint16(len(ranges)),
		Data:        words[:k:k],
	}
	var bodies []*GPADLBody
	for rest := words[k:]; len(rest) > 0; {
		k := min(len(rest), gpadlBodyMaxWords)
		bodies = append(bodies, &GPADLBody{GPADL: gpadl, Data: rest[:k:k]})
		rest = rest[k:]
	}
	return h, bodies, nil
}

// GPADLAssembler collects a GPADL on the host side: it starts from the
// GPADL_HEADER, takes the GPADL_BODY messages that follow, and once the
// range list is as long as RangeBufLen says, checks it and returns it as
// ranges. The host then answers GPADL_CREATED with StatusSuccess, or with
// StatusUnsuccessful if NewGPADLAssembler or Add failed with ErrMalformed.
//
// Bodies carry only the GPADL id, so the host routes each to the assembler
// of the matching incomplete GPADL; a body for another id is refused with
// ErrGPADLMismatch and leaves the assembler as it was, and so is a body after
// completion (which the host should not have routed here: the GPADL is no
// longer incomplete). Any other error is final: the assembler keeps
// returning it.
//
// Memory grows only as bodies arrive and is bounded by MaxGPADLPFNs.
type GPADLAssembler struct {
	childRelID uint32
	gpadl      uint32
	count      int      // ranges promised by the header
	total      int      // words promised by the header
	data       []uint64 // words received so far
	ranges     []GPARange
	err        error
}

// NewGPADLAssembler starts assembling the GPADL that h begins. h is checked
// as Decode checks it, so hand-built headers are safe too. If h already
// holds the whole range list, the assembler is Done at once.
func NewGPADLAssembler(h *GPADLHeader) (*GPADLAssembler, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	a := &GPADLAssembler{
		childRelID: h.ChildRelID,
		gpadl:      h.GPADL,
		count:      int(h.RangeCount),
		total:      int(h.RangeBufLen) / 8,
		data:       append([]uint64(nil), h.Data...),
	}
	if len(a.data) == a.total {
		if err := a.finish(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// ChildRelID is the channel the GPADL belongs to.
func (a *GPADLAssembler) ChildRelID() uint32 { return a.childRelID }

// GPADL is the GPADL id.
func (a *GPADLAssembler) GPADL() uint32 { return a.gpadl }

// Add appends a body's words and reports whether the GPADL is complete;
// done is Done() after the call, error or not. Add fails with
// ErrGPADLMismatch for a body of another GPADL and with ErrMalformed if the
// body arrives after completion; neither changes the assembler. It also
// fails with ErrMalformed, for good, if the body brings more words than
// RangeBufLen leaves or the completed list does not parse.
func (a *GPADLAssembler) Add(b *GPADLBody) (done bool, err error) {
	if b.GPADL != a.gpadl {
		return a.Done(), fmt.Errorf("%w: body for gpadl %#x, assembling %#x", ErrGPADLMismatch, b.GPADL, a.gpadl)
	}
	if a.err != nil {
		return false, a.err
	}
	if a.Done() {
		return true, fmt.Errorf("%w: gpadl %#x: body after the range list was complete", ErrMalformed, a.gpadl)
	}
	if left := a.total - len(a.data); len(b.Data) > left {
		a.err = fmt.Errorf("%w: gpadl %#x: body brings %d words, range_buflen leaves %d", ErrMalformed, a.gpadl, len(b.Data), left)
		return false, a.err
	}
	a.data = append(a.data, b.Data...)
	if len(a.data) == a.total {
		if err := a.finish(); err != nil {
			a.err = err
			return false, err
		}
	}
	return a.Done(), nil
}

func (a *GPADLAssembler) finish() error {
	ranges, err := walkRanges(a.data, a.count, a.total, true)
	if err != nil {
		return fmt.Errorf("gpadl %#x: %w", a.gpadl, err)
	}
	a.ranges = ranges
	return nil
}

// Done reports whether the whole range list has arrived and checked out.
func (a *GPADLAssembler) Done() bool { return a.ranges != nil }

// Ranges returns the GPADL's ranges once Done, nil before. The PFN slices
// share the assembler's storage.
func (a *GPADLAssembler) Ranges() []GPARange { return a.ranges }
