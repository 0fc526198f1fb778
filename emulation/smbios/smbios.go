// Package smbios builds the SMBIOS tables a Generation 1 partition's
// firmware publishes (DMTF DSP0134, 2.8 structures behind a 2.1 32-bit
// entry point): system, chassis, processors, memory and boot status. The
// worker hands them to the firmware over fw_cfg (etc/smbios/smbios-anchor
// and etc/smbios/smbios-tables), the way QEMU does for SeaBIOS, which
// otherwise composes its own tables field by field through fw_cfg name
// lookups: a few hundred milliseconds of emulated firmware code on these
// machines.
package smbios

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Machine describes what the tables say.
type Machine struct {
	Manufacturer string
	Product      string
	Version      string
	Serial       string
	UUID         [16]byte // in the order the text form reads
	Processors   int
	RAM          []Range // where RAM is in the physical address space
	CPUID        uint64  // processor ID: CPUID(1) EAX in the low half, EDX in the high
}

// Range is RAM at a guest physical address, in bytes.
type Range struct{ Base, Size uint64 }

// Memory is described as QEMU describes it: one memory array, devices of
// at most 16 GiB in it (type 17), and a mapped range per RAM range (type
// 19).
const (
	deviceBytes = 16 << 30
	maxMemory   = 1 << 40 // type 19's addresses are 32-bit KiB (4 TiB)
)

// EntryPointSize is the length of the 2.1 entry point.
const EntryPointSize = 0x1F

// Build returns the entry point and the structure table. The entry
// point's table address is 0: the firmware places the table and fills it
// in (and the checksums after it).
func Build(m Machine) (anchor, table []byte, err error) {
	if m.Processors < 1 || m.Processors > 255 {
		return nil, nil, fmt.Errorf("smbios: %d processors", m.Processors)
	}
	var total uint64
	for _, r := range m.RAM {
		if r.Size < 1<<20 || r.Base%(1<<10) != 0 || r.Size%(1<<10) != 0 || r.Base+r.Size > maxMemory {
			return nil, nil, fmt.Errorf("smbios: RAM %#x+%#x: want whole KiB, at least 1 MiB, below %d GiB", r.Base, r.Size, maxMemory>>30)
		}
		total += r.Size
	}
	if total == 0 || total > maxMemory {
		return nil, nil, fmt.Errorf("smbios: %d MiB of RAM out of range", total>>20)
	}
	devices := int((total + deviceBytes - 1) / deviceBytes)
	var b builder
	b.add(1, 0x100, func(s *structure) {
		s.str(m.Manufacturer)
		s.str(m.Product)
		s.str(m.Version)
		s.str(m.Serial)
		s.bytes(smbiosUUID(m.UUID))
		s.u8(0x06) // wake-up type: power switch
		s.str("")  // SKU
		s.str("")  // family
	})
	b.add(3, 0x300, func(s *structure) {
		s.str(m.Manufacturer)
		s.u8(0x01) // type: other
		s.str("")  // version
		s.str("")  // serial
		s.str("")  // asset tag
		s.u8(0x03) // boot-up state: safe
		s.u8(0x03) // power supply state: safe
		s.u8(0x03) // thermal state: safe
		s.u8(0x02) // security status: unknown
		s.u32(0)   // OEM-defined
		s.u8(0)    // height
		s.u8(0)    // power cords
		s.u8(0)    // contained elements
		s.u8(0)    // their record length
	})
	for i := 0; i < m.Processors; i++ {
		b.add(4, uint16(0x400+i), func(s *structure) {
			s.str(fmt.Sprintf("CPU %d", i))
			s.u8(0x03) // processor type: central processor
			s.u8(0x01) // family: other
			s.str(m.Manufacturer)
			s.u64(m.CPUID)
			s.str("")     // version
			s.u8(0)       // voltage
			s.u16(0)      // external clock: unknown
			s.u16(2000)   // max speed, MHz
			s.u16(2000)   // current speed
			s.u8(0x41)    // status: socket populated, enabled
			s.u8(0x01)    // upgrade: other
			s.u16(0xFFFF) // L1 cache: not provided
			s.u16(0xFFFF) // L2
			s.u16(0xFFFF) // L3
			s.str("")     // serial
			s.str("")     // asset tag
			s.str("")     // part number
		})
	}
	b.add(16, 0x1000, func(s *structure) {
		s.u8(0x03)                 // location: system board
		s.u8(0x03)                 // use: system memory
		s.u8(0x03)                 // error correction: none
		s.u32(uint32(total >> 10)) // maximum capacity, KiB
		s.u16(0xFFFE)              // error information: not provided
		s.u16(uint16(devices))     // memory devices
	})
	for i := range devices {
		size := min(total-uint64(i)*deviceBytes, deviceBytes)
		b.add(17, 0x1100+uint16(i), func(s *structure) {
			s.u16(0x1000) // physical memory array
			s.u16(0xFFFE) // error information: not provided
			s.u16(64)     // total width
			s.u16(64)     // data width
			s.u16(uint16(size >> 20))
			s.u8(0x09) // form factor: DIMM
			s.u8(0)    // device set
			s.str(fmt.Sprintf("DIMM %d", i))
			s.str("")  // bank locator
			s.u8(0x07) // memory type: RAM
			s.u16(0)   // type detail
			s.u16(0)   // speed: unknown
			s.str(m.Manufacturer)
			s.str("") // serial
			s.str("") // asset tag
			s.str("") // part number
		})
	}
	for i, r := range m.RAM {
		b.add(19, 0x1300+uint16(i), func(s *structure) {
			s.u32(uint32(r.Base >> 10))            // starting address, KiB
			s.u32(uint32((r.Base+r.Size)>>10) - 1) // ending address, KiB
			s.u16(0x1000)                          // memory array
			s.u8(uint8(devices))                   // partition width
		})
	}
	b.add(32, 0x2000, func(s *structure) {
		s.bytes(make([]byte, 6)) // reserved
		s.u8(0)                  // boot status: no errors
	})
	b.add(127, 0x7F00, func(*structure) {})
	if len(b.table) > 0xFFFF {
		return nil, nil, fmt.Errorf("smbios: table of %d bytes", len(b.table))
	}

	ep := make([]byte, EntryPointSize)
	copy(ep, "_SM_")
	ep[5] = EntryPointSize
	ep[6], ep[7] = 2, 8 // version 2.8
	binary.LittleEndian.PutUint16(ep[8:], uint16(b.maxSize))
	copy(ep[0x10:], "_DMI_")
	binary.LittleEndian.PutUint16(ep[0x16:], uint16(len(b.table)))
	binary.LittleEndian.PutUint16(ep[0x1C:], uint16(b.count))
	ep[0x1E] = 0x28
	ep[0x15] = -sum(ep[0x10:])
	ep[4] = -sum(ep)
	return ep, b.table, nil
}

// smbiosUUID encodes a UUID as SMBIOS 2.6 and later do: the first three
// fields little-endian.
func smbiosUUID(u [16]byte) []byte {
	return []byte{u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6],
		u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]}
}

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// builder appends structures.
type builder struct {
	table   []byte
	count   int
	maxSize int
}

// structure is one being built: its formatted area and its strings.
type structure struct {
	formatted []byte
	strs      []string
}

func (s *structure) u8(v uint8)     { s.formatted = append(s.formatted, v) }
func (s *structure) u16(v uint16)   { s.formatted = binary.LittleEndian.AppendUint16(s.formatted, v) }
func (s *structure) u32(v uint32)   { s.formatted = binary.LittleEndian.AppendUint32(s.formatted, v) }
func (s *structure) u64(v uint64)   { s.formatted = binary.LittleEndian.AppendUint64(s.formatted, v) }
func (s *structure) bytes(v []byte) { s.formatted = append(s.formatted, v...) }

// str adds a string field: its number in the string set, or 0 for none.
func (s *structure) str(v string) {
	v = strings.ReplaceAll(v, "\x00", "")
	if v == "" {
		s.u8(0)
		return
	}
	s.strs = append(s.strs, v)
	s.u8(uint8(len(s.strs)))
}

func (b *builder) add(typ uint8, handle uint16, fill func(*structure)) {
	s := &structure{formatted: []byte{typ, 0}}
	s.u16(handle)
	fill(s)
	s.formatted[1] = uint8(len(s.formatted))
	start := len(b.table)
	b.table = append(b.table, s.formatted...)
	for _, str := range s.strs {
		b.table = append(b.table, str...)
		b.table = append(b.table, 0)
	}
	if len(s.strs) == 0 {
		b.table = append(b.table, 0)
	}
	b.table = append(b.table, 0)
	b.count++
	b.maxSize = max(b.maxSize, len(b.table)-start)
}
