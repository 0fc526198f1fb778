// Package elf reads the static x86-64 executables a Generation 2
// partition runs (normally Go programs built with CGO_ENABLED=0): the
// header and the loadable segments, checked against the file and against
// the range of addresses the guest may use. The file comes from a user
// and is hostile until checked.
package elf

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Segment is one PT_LOAD segment.
type Segment struct {
	Vaddr  uint64 // where it goes
	Memsz  uint64 // bytes in memory (the part beyond Filesz is zero)
	Offset uint64 // where its bytes start in the file
	Filesz uint64
	Flags  uint32 // PF_X 1, PF_W 2, PF_R 4
}

// Executable is a checked static executable.
type Executable struct {
	Entry    uint64
	Segments []Segment
	Phoff    uint64 // program headers in the file
	Phnum    uint16
	Phentsz  uint16
	PhdrAddr uint64 // program headers in memory (for AT_PHDR), 0 if not loaded
}

// ErrFormat: not a static x86-64 executable this loader takes.
var ErrFormat = errors.New("elf: not a static x86-64 executable")

const (
	ptLoad    = 1
	ptDynamic = 2
	ptInterp  = 3
	ptPhdr    = 6
	pfX       = 1

	maxSegments = 64
)

// Parse checks file and returns its loadable segments. Every segment must
// lie within [lo, hi), not overlap another, and keep its file bytes inside
// the file; the entry point must be in an executable segment.
func Parse(file []byte, lo, hi uint64) (*Executable, error) {
	bad := func(format string, a ...any) (*Executable, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrFormat}, a...)...)
	}
	if len(file) < 64 || string(file[:4]) != "\x7fELF" {
		return bad("no ELF header")
	}
	if file[4] != 2 || file[5] != 1 {
		return bad("want 64-bit little-endian (class %d, data %d)", file[4], file[5])
	}
	le := binary.LittleEndian
	typ, machine := le.Uint16(file[16:]), le.Uint16(file[18:])
	if typ != 2 {
		return bad("type %d, want an executable (2; position-independent executables are not taken)", typ)
	}
	if machine != 62 {
		return bad("machine %d, want x86-64 (62)", machine)
	}
	x := &Executable{Entry: le.Uint64(file[24:]), Phoff: le.Uint64(file[32:]), Phentsz: le.Uint16(file[54:]), Phnum: le.Uint16(file[56:])}
	if x.Phentsz != 56 {
		return bad("program header size %d, want 56", x.Phentsz)
	}
	if x.Phnum == 0 || x.Phnum > maxSegments {
		return bad("%d program headers", x.Phnum)
	}
	end := x.Phoff + uint64(x.Phnum)*56
	if x.Phoff > uint64(len(file)) || end > uint64(len(file)) || end < x.Phoff {
		return bad("program headers beyond the file")
	}
	entryOK := false
	for i := 0; i < int(x.Phnum); i++ {
		ph := file[x.Phoff+uint64(i)*56:]
		ptype, flags := le.Uint32(ph), le.Uint32(ph[4:])
		s := Segment{Flags: flags, Offset: le.Uint64(ph[8:]), Vaddr: le.Uint64(ph[16:]), Filesz: le.Uint64(ph[32:]), Memsz: le.Uint64(ph[40:])}
		switch ptype {
		case ptInterp, ptDynamic:
			return bad("dynamically linked (program header type %d)", ptype)
		case ptPhdr:
			x.PhdrAddr = s.Vaddr
			continue
		case ptLoad:
		default:
			continue
		}
		if s.Memsz == 0 {
			continue
		}
		if s.Filesz > s.Memsz {
			return bad("segment %d: file size %#x above memory size %#x", i, s.Filesz, s.Memsz)
		}
		if s.Offset > uint64(len(file)) || s.Filesz > uint64(len(file))-s.Offset {
			return bad("segment %d: file bytes beyond the file", i)
		}
		if s.Vaddr < lo || s.Vaddr >= hi || s.Memsz > hi-s.Vaddr {
			return bad("segment %d at %#x+%#x outside [%#x, %#x)", i, s.Vaddr, s.Memsz, lo, hi)
		}
		for j, o := range x.Segments {
			if s.Vaddr < o.Vaddr+o.Memsz && o.Vaddr < s.Vaddr+s.Memsz {
				return bad("segments %d and %d overlap", j, i)
			}
		}
		if flags&pfX != 0 && x.Entry >= s.Vaddr && x.Entry < s.Vaddr+s.Memsz {
			entryOK = true
		}
		x.Segments = append(x.Segments, s)
	}
	if len(x.Segments) == 0 {
		return bad("no loadable segments")
	}
	if !entryOK {
		return bad("entry point %#x is not in an executable segment", x.Entry)
	}
	if x.PhdrAddr == 0 {
		// Static executables usually carry their headers in the first
		// segment; find them there.
		for _, s := range x.Segments {
			if x.Phoff >= s.Offset && end <= s.Offset+s.Filesz {
				x.PhdrAddr = s.Vaddr + (x.Phoff - s.Offset)
			}
		}
	}
	return x, nil
}
