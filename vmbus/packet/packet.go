// Package packet owns the wire format of VMBus data-plane packets: the
// 16-byte packet descriptor that frames every packet in a ring buffer, the
// packet types, and the extended headers of GPA-direct (range list) and
// transfer-page packets.
//
// A packet as it sits in a ring (before the 8-byte trailer that package ring
// adds and strips) looks like this, all little-endian:
//
//	+0   type     u16   packet type (TypeDataInband, TypeCompletion, ...)
//	+2   offset8  u16   payload offset from the descriptor, in 8-byte units (>= 2)
//	+4   len8     u16   packet length including padding, in 8-byte units
//	+6   flags    u16   bit 0: completion requested
//	+8   trans_id u64   transaction id, echoed by the completion
//	+16  extended header (offset8*8 - 16 bytes; GPA-direct ranges, transfer pages)
//	+offset8*8  payload, zero-padded to len8*8
//
// Everything here treats its input as hostile: Parse checks every length
// against the bytes it was given and never reads outside them.
package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// DescriptorSize is the size of the packet descriptor (Hyper-V
// vmpacket_descriptor).
const DescriptorSize = 16

// PageSize is the Hyper-V page size that PFNs in range lists refer to.
const PageSize = 4096

// Type is a VMBus packet type (Hyper-V vmbus_packet_type).
type Type uint16

// Packet types in Hyper-V's numbering. Only TypeDataInband,
// TypeDataTransferPages, TypeDataGPADirect and TypeCompletion are used by
// real drivers; Parse refuses the others.
const (
	TypeInvalid             Type = 0x0
	TypeSynch               Type = 0x1
	TypeAddTransferPageSet  Type = 0x2
	TypeRemoveTransferPages Type = 0x3
	TypeEstablishGPADL      Type = 0x4
	TypeTeardownGPADL       Type = 0x5
	TypeDataInband          Type = 0x6
	TypeDataTransferPages   Type = 0x7
	TypeDataGPADL           Type = 0x8
	TypeDataGPADirect       Type = 0x9
	TypeCancelRequest       Type = 0xA
	TypeCompletion          Type = 0xB
	TypeDataAdditionalPkt   Type = 0xC
	TypeAdditionalData      Type = 0xD
)

func (t Type) String() string {
	switch t {
	case TypeDataInband:
		return "inband"
	case TypeDataTransferPages:
		return "transfer-pages"
	case TypeDataGPADirect:
		return "gpa-direct"
	case TypeCompletion:
		return "completion"
	}
	return fmt.Sprintf("type(%#x)", uint16(t))
}

// FlagCompletionRequested asks the receiver to answer with a completion
// packet carrying the same transaction id. It is the only defined flag.
const FlagCompletionRequested uint16 = 1

// Errors returned by the parsers. Each is wrapped with the offending values.
var (
	// ErrTruncated: fewer bytes than the descriptor or a header claims.
	ErrTruncated = errors.New("packet: truncated")
	// ErrBadDescriptor: offset8/len8 inconsistent, or unknown flag bits.
	ErrBadDescriptor = errors.New("packet: bad descriptor")
	// ErrBadType: a packet type no real driver sends.
	ErrBadType = errors.New("packet: unsupported packet type")
	// ErrBadRange: a malformed GPA or transfer-page range list.
	ErrBadRange = errors.New("packet: bad range list")
)

// Descriptor mirrors Hyper-V's vmpacket_descriptor.
type Descriptor struct {
	Type    Type
	Offset8 uint16 // payload offset in 8-byte units
	Len8    uint16 // total length in 8-byte units, trailer excluded
	Flags   uint16
	TransID uint64
}

// ParseDescriptor decodes and checks the framing fields of a descriptor:
// offset8 >= 2 and len8 >= offset8. It does not look at the type.
func ParseDescriptor(b []byte) (Descriptor, error) {
	if len(b) < DescriptorSize {
		return Descriptor{}, fmt.Errorf("%w: %d bytes, descriptor needs %d", ErrTruncated, len(b), DescriptorSize)
	}
	d := Descriptor{
		Type:    Type(binary.LittleEndian.Uint16(b[0:])),
		Offset8: binary.LittleEndian.Uint16(b[2:]),
		Len8:    binary.LittleEndian.Uint16(b[4:]),
		Flags:   binary.LittleEndian.Uint16(b[6:]),
		TransID: binary.LittleEndian.Uint64(b[8:]),
	}
	if d.Offset8 < DescriptorSize/8 || d.Len8 < d.Offset8 {
		return Descriptor{}, fmt.Errorf("%w: offset8 %d len8 %d", ErrBadDescriptor, d.Offset8, d.Len8)
	}
	return d, nil
}

// Put encodes d into b[0:16].
func (d Descriptor) Put(b []byte) {
	_ = b[DescriptorSize-1]
	binary.LittleEndian.PutUint16(b[0:], uint16(d.Type))
	binary.LittleEndian.PutUint16(b[2:], d.Offset8)
	binary.LittleEndian.PutUint16(b[4:], d.Len8)
	binary.LittleEndian.PutUint16(b[6:], d.Flags)
	binary.LittleEndian.PutUint64(b[8:], d.TransID)
}

// Size is the packet's length in bytes as framed in the ring, padding
// included and the 8-byte trailer excluded.
func (d Descriptor) Size() int { return int(d.Len8) * 8 }

// MaxPacketSize is the largest framed packet a descriptor can express.
const MaxPacketSize = 0xFFFF * 8

// Frame computes the descriptor for a packet with an extended header of
// extLen bytes (a multiple of 8) and payloadLen payload bytes.
func Frame(t Type, flags uint16, transID uint64, extLen, payloadLen int) (Descriptor, error) {
	if extLen < 0 || extLen%8 != 0 || payloadLen < 0 {
		return Descriptor{}, fmt.Errorf("%w: extended header %d bytes, payload %d", ErrBadDescriptor, extLen, payloadLen)
	}
	total := DescriptorSize + extLen + payloadLen
	if total > MaxPacketSize {
		return Descriptor{}, fmt.Errorf("%w: %d bytes exceeds %d", ErrBadDescriptor, total, MaxPacketSize)
	}
	return Descriptor{
		Type:    t,
		Offset8: uint16((DescriptorSize + extLen) / 8),
		Len8:    uint16((total + 7) / 8),
		Flags:   flags,
		TransID: transID,
	}, nil
}

// GPARange mirrors Hyper-V's gpa_range: ByteCount bytes starting ByteOffset
// bytes into the first of PFNs, continuing through the following pages.
type GPARange struct {
	ByteCount  uint32
	ByteOffset uint32
	PFNs       []uint64
}

// PFNCount is the number of pages a range with these counts spans:
// ceil((offset+count)/4096).
func PFNCount(byteOffset, byteCount uint32) int {
	return int((uint64(byteOffset) + uint64(byteCount) + PageSize - 1) / PageSize)
}

// WireSize is the encoded size of the range: 8 bytes plus 8 per PFN.
func (r GPARange) WireSize() int { return 8 + 8*len(r.PFNs) }

// AppendTo appends the wire form of r.
func (r GPARange) AppendTo(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, r.ByteCount)
	b = binary.LittleEndian.AppendUint32(b, r.ByteOffset)
	for _, p := range r.PFNs {
		b = binary.LittleEndian.AppendUint64(b, p)
	}
	return b
}

// XferRange mirrors Hyper-V's vmtransfer_page_range: a span inside the
// transfer page set (for netvsc, the receive buffer).
type XferRange struct {
	ByteCount  uint32
	ByteOffset uint32
}

// Packet is a parsed data-plane packet. Its slices alias the buffer given to
// Parse (except Ranges' headers, which are reused across calls).
type Packet struct {
	Descriptor
	// GPA-direct packets: the range list.
	Ranges []GPARange
	// Transfer-page packets.
	XferPageSetID uint16
	XferRanges    []XferRange
	// Payload is the bytes from offset8*8 to the end of the packet,
	// including tail padding: device protocols carry their own lengths.
	Payload []byte
}

// CompletionRequested reports whether the sender wants a completion.
func (p *Packet) CompletionRequested() bool { return p.Flags&FlagCompletionRequested != 0 }

// Parse decodes one framed packet (exactly the descriptor's len8*8 bytes, as
// ring.Reader returns it) into p, reusing p's slices. The range lists are
// bounded by the extended-header size, so a hostile packet cannot make Parse
// allocate more than proportional to len(b).
func Parse(b []byte, p *Packet) error {
	d, err := ParseDescriptor(b)
	if err != nil {
		return err
	}
	if d.Size() != len(b) {
		return fmt.Errorf("%w: len8 %d says %d bytes, have %d", ErrTruncated, d.Len8, d.Size(), len(b))
	}
	if d.Flags&^FlagCompletionRequested != 0 {
		return fmt.Errorf("%w: flags %#x", ErrBadDescriptor, d.Flags)
	}
	p.Descriptor = d
	p.Ranges = p.Ranges[:0]
	p.XferRanges = p.XferRanges[:0]
	p.XferPageSetID = 0
	ext := b[DescriptorSize : int(d.Offset8)*8]
	p.Payload = b[int(d.Offset8)*8:]
	switch d.Type {
	case TypeDataInband, TypeCompletion:
		return nil
	case TypeDataGPADirect:
		return parseGPADirect(ext, p)
	case TypeDataTransferPages:
		return parseXferPages(ext, p)
	}
	return fmt.Errorf("%w: %v", ErrBadType, d.Type)
}

// parseGPADirect decodes the GPA-direct extended header: reserved u32,
// range_cnt u32, then range_cnt gpa_range entries back to back.
func parseGPADirect(ext []byte, p *Packet) error {
	if len(ext) < 8 {
		return fmt.Errorf("%w: gpa-direct header %d bytes", ErrTruncated, len(ext))
	}
	count := binary.LittleEndian.Uint32(ext[4:])
	rest := ext[8:]
	// Each range takes at least 16 bytes (header plus one PFN), which bounds
	// count by the bytes present before anything is allocated.
	if count == 0 || uint64(count)*16 > uint64(len(rest)) {
		return fmt.Errorf("%w: %d ranges in %d bytes", ErrBadRange, count, len(rest))
	}
	for i := uint32(0); i < count; i++ {
		if len(rest) < 8 {
			return fmt.Errorf("%w: range %d truncated", ErrBadRange, i)
		}
		bc := binary.LittleEndian.Uint32(rest[0:])
		bo := binary.LittleEndian.Uint32(rest[4:])
		if bo >= PageSize || bc == 0 {
			return fmt.Errorf("%w: range %d byte_offset %d byte_count %d", ErrBadRange, i, bo, bc)
		}
		n := PFNCount(bo, bc)
		if n > (len(rest)-8)/8 {
			return fmt.Errorf("%w: range %d needs %d pfns, %d bytes left", ErrBadRange, i, n, len(rest)-8)
		}
		r := GPARange{ByteCount: bc, ByteOffset: bo}
		if int(i) < cap(p.Ranges) {
			// Reuse the PFN storage of the range that sat here last time.
			r.PFNs = p.Ranges[:cap(p.Ranges)][i].PFNs[:0]
		}
		for j := 0; j < n; j++ {
			r.PFNs = append(r.PFNs, binary.LittleEndian.Uint64(rest[8+8*j:]))
		}
		p.Ranges = append(p.Ranges, r)
		rest = rest[8+8*n:]
	}
	return nil
}

// parseXferPages decodes the transfer-page extended header (Hyper-V
// vmtransfer_page_packet_header after the descriptor): xfer_pageset_id u16,
// sender_owns_set u8, reserved u8, range_cnt u32, ranges of 8 bytes.
func parseXferPages(ext []byte, p *Packet) error {
	if len(ext) < 8 {
		return fmt.Errorf("%w: transfer-page header %d bytes", ErrTruncated, len(ext))
	}
	p.XferPageSetID = binary.LittleEndian.Uint16(ext[0:])
	count := binary.LittleEndian.Uint32(ext[4:])
	rest := ext[8:]
	if uint64(count)*8 > uint64(len(rest)) {
		return fmt.Errorf("%w: %d transfer ranges in %d bytes", ErrBadRange, count, len(rest))
	}
	for i := uint32(0); i < count; i++ {
		p.XferRanges = append(p.XferRanges, XferRange{
			ByteCount:  binary.LittleEndian.Uint32(rest[8*i:]),
			ByteOffset: binary.LittleEndian.Uint32(rest[8*i+4:]),
		})
	}
	return nil
}

// AppendGPADirectHeader appends the extended header of a GPA-direct packet
// for ranges: reserved u32 (0), range_cnt u32, the ranges. Its length is a
// multiple of 8, as Frame requires.
func AppendGPADirectHeader(b []byte, ranges []GPARange) []byte {
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ranges)))
	for _, r := range ranges {
		b = r.AppendTo(b)
	}
	return b
}

// AppendXferPagesHeader appends the extended header of a transfer-page
// packet, padded to a multiple of 8 (it already is: 8 + 8n).
func AppendXferPagesHeader(b []byte, setID uint16, ranges []XferRange) []byte {
	b = binary.LittleEndian.AppendUint16(b, setID)
	b = append(b, 0, 0) // sender_owns_set, reserved
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ranges)))
	for _, r := range ranges {
		b = binary.LittleEndian.AppendUint32(b, r.ByteCount)
		b = binary.LittleEndian.AppendUint32(b, r.ByteOffset)
	}
	return b
}
