// Package fwcfg models QEMU's firmware configuration device (fw_cfg), the
// interface SeaBIOS uses on a QEMU/KVM machine to learn the RAM size, the
// e820 map, the CPU count, the boot order and its own settings (for
// example "etc/sercon-port", which turns on its serial console).
//
// Only the traditional I/O interface is modelled (QEMU docs/specs/fw_cfg.rst,
// "Selector (Control) Register" and "Data Register"), at Base on the port
// bus:
//
//	0x510 selector  16-bit, little-endian. Writing a key selects that item
//	                and rewinds its data offset to 0.
//	0x511 data       8-bit. Each read returns the selected item's next
//	                byte, 0 once past its end or when the key is unknown.
//
// Accesses the spec leaves open are resolved as follows, and tested:
//
//   - A byte write to 0x510 is the low half of the selector; the high half
//     is taken as 0, so it selects a key below 0x100 (all the standard
//     keys). The high half is reachable only through a 16-bit write, since
//     its byte address is the data port.
//   - The selector is write-only in the spec; here reading it returns the
//     selected key, little-endian (a byte read gives the low half).
//   - Writes to the data port (the legacy write path, removed in QEMU 2.4
//     and brought back only through DMA) are ignored and counted.
//   - Keys are matched exactly: the write-channel bit (0x4000) is not
//     masked off, so such a key is unknown and reads 0.
//
// The feature bitmap (KeyID) advertises the traditional interface only; the
// DMA interface (feature bit 1, ports 0x514-0x51B) is not implemented.
//
// Named files get keys from 0x20 upward in the order they are added; the
// directory (KeyFileDir) lists them sorted by name with strcmp order, as
// QEMU does. (QEMU also renumbers the keys so that they follow the sorted
// order; firmware looks files up by name through the directory, so stable
// keys serve as well and are simpler.)
//
// Locking: one mutex, Device.mu, guards all item state; it is a leaf lock.
// The counters are atomics.
package fwcfg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// Ports: the device decodes [Base, Base+Size).
const (
	Base = 0x510
	Size = 2 // selector (offset 0, 16-bit) and data (offset 1, 8-bit)
)

// Standard keys (QEMU include/standard-headers/linux/qemu_fw_cfg.h).
const (
	KeySignature = 0x00 // "QEMU"
	KeyID        = 0x01 // u32 LE feature bitmap
	KeyRAMSize   = 0x03 // u64 LE
	KeyNoGraphic = 0x04 // u16 LE
	KeyNBCPUs    = 0x05 // u16 LE
	KeyNUMA      = 0x0D // u64 LE node count, then per-CPU and per-node u64s
	KeyBootMenu  = 0x0E // u16 LE
	KeyMaxCPUs   = 0x0F // u16 LE
	KeyFileDir   = 0x19 // generated file directory

	// KeyFileFirst is the key of the first file added.
	KeyFileFirst = 0x20
	// KeyArchLocal marks architecture-specific keys (0x8000-0xFFFF), such
	// as QEMU's x86 e820 table at 0x8003.
	KeyArchLocal = 0x8000
	// keyWriteChannel marks a key selected for writing (spec: "Bit14").
	keyWriteChannel = 0x4000
)

const (
	featureTraditional = 1 << 0 // FW_CFG_VERSION; bit 1 would be DMA

	// MaxFileName is the size of a directory entry's name field,
	// including the terminating NUL.
	MaxFileName = 56
	// MaxFiles bounds the files so that their keys stay below the
	// write-channel bit.
	MaxFiles = keyWriteChannel - KeyFileFirst
	// MaxData bounds the bytes held by all items together.
	MaxData = 64 << 20

	dirEntrySize = 4 + 2 + 2 + MaxFileName
)

// E820 entry types (ACPI "Address Range Types").
const (
	E820RAM      = 1
	E820Reserved = 2
)

// E820Entry is one range of the e820 map; it mirrors QEMU's struct
// e820_entry (packed, little-endian).
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// E820 encodes entries as QEMU's "etc/e820" file: packed 20-byte records
// of address u64, length u64, type u32, little-endian.
func E820(entries []E820Entry) []byte {
	b := make([]byte, 0, 20*len(entries))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint64(b, e.Addr)
		b = binary.LittleEndian.AppendUint64(b, e.Size)
		b = binary.LittleEndian.AppendUint32(b, e.Type)
	}
	return b
}

// Stats counts the device's traffic and the accesses a well-behaved
// firmware does not make.
type Stats struct {
	Selects     uint64 // selector writes
	DataReads   uint64 // bytes read from the data port
	DataWrites  uint64 // data-port writes, ignored
	UnknownKeys uint64 // selects of a key with no item
}

// Sentinel errors.
var (
	// ErrItem: an item or file that cannot be added (bad key or name,
	// duplicate).
	ErrItem = errors.New("fwcfg: bad item")
	// ErrFull: adding the item would exceed MaxData or MaxFiles.
	ErrFull = errors.New("fwcfg: too much data")
)

// Device is the fw_cfg device. It implements bus.Device.
type Device struct {
	mu       sync.Mutex
	items    map[uint16][]byte // by key; guarded by mu
	files    []file            // sorted by name; guarded by mu
	total    int               // bytes in items, directory excluded; guarded by mu
	selector uint16            // last key written; guarded by mu
	selected []byte            // items[selector], nil if unknown; guarded by mu
	pos      int               // data offset into selected; guarded by mu

	selects, dataReads, dataWrites, unknownKeys atomic.Uint64
}

type file struct {
	name string
	key  uint16
}

// New makes a device holding the signature, the feature bitmap and an
// empty file directory, with the signature selected (QEMU's reset state).
func New() *Device {
	d := &Device{items: map[uint16][]byte{}}
	d.items[KeySignature] = []byte("QEMU")
	d.items[KeyID] = binary.LittleEndian.AppendUint32(nil, featureTraditional)
	d.items[KeyFileDir] = d.directoryLocked()
	d.selectLocked(KeySignature)
	return d
}

// AddItem adds a fixed-key item. The key may be a standard one below
// KeyFileFirst other than KeyFileDir, or an architecture-local one
// (KeyArchLocal and up) without the write-channel bit. data is copied.
func (d *Device) AddItem(key uint16, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case key == KeyFileDir:
		return fmt.Errorf("%w: key %#x is the generated file directory", ErrItem, key)
	case key&keyWriteChannel != 0:
		return fmt.Errorf("%w: key %#x has the write-channel bit", ErrItem, key)
	case key&KeyArchLocal == 0 && key >= KeyFileFirst:
		return fmt.Errorf("%w: key %#x is reserved for files", ErrItem, key)
	}
	if _, dup := d.items[key]; dup {
		return fmt.Errorf("%w: key %#x already set", ErrItem, key)
	}
	return d.putLocked(key, data)
}

// AddFile adds a named file under the next free file key and lists it in
// the directory. The name must be 1 to MaxFileName-1 bytes with no NUL.
// data is copied.
func (d *Device) AddFile(name string, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if name == "" || len(name) >= MaxFileName {
		return fmt.Errorf("%w: file name %q: want 1 to %d bytes", ErrItem, name, MaxFileName-1)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return fmt.Errorf("%w: file name %q contains NUL", ErrItem, name)
		}
	}
	i := sort.Search(len(d.files), func(i int) bool { return d.files[i].name >= name })
	if i < len(d.files) && d.files[i].name == name {
		return fmt.Errorf("%w: file %q already exists", ErrItem, name)
	}
	if len(d.files) >= MaxFiles {
		return fmt.Errorf("%w: more than %d files", ErrFull, MaxFiles)
	}
	key := uint16(KeyFileFirst + len(d.files))
	if err := d.putLocked(key, data); err != nil {
		return fmt.Errorf("file %q: %w", name, err)
	}
	d.files = append(d.files, file{})
	copy(d.files[i+1:], d.files[i:])
	d.files[i] = file{name: name, key: key}
	d.items[KeyFileDir] = d.directoryLocked()
	if d.selector == KeyFileDir { // keep a reader's offset into the new copy
		d.selected = d.items[KeyFileDir]
	}
	return nil
}

func (d *Device) putLocked(key uint16, data []byte) error {
	if len(data) > MaxData-d.total {
		return fmt.Errorf("%w: %d bytes on top of %d exceeds %d", ErrFull, len(data), d.total, MaxData)
	}
	d.total += len(data)
	d.items[key] = append(make([]byte, 0, len(data)), data...)
	if d.selector == key {
		d.selected = d.items[key]
	}
	return nil
}

// directoryLocked encodes the file directory (spec "File Directory",
// struct FWCfgFiles), all fields big-endian:
//
//	u32 count
//	count × { u32 size; u16 select; u16 reserved; char name[56] }
//
// with name NUL-padded.
func (d *Device) directoryLocked() []byte {
	b := make([]byte, 0, 4+dirEntrySize*len(d.files))
	b = binary.BigEndian.AppendUint32(b, uint32(len(d.files)))
	for _, f := range d.files {
		b = binary.BigEndian.AppendUint32(b, uint32(len(d.items[f.key])))
		b = binary.BigEndian.AppendUint16(b, f.key)
		b = append(b, 0, 0)
		var name [MaxFileName]byte
		copy(name[:], f.name)
		b = append(b, name[:]...)
	}
	return b
}

func (d *Device) selectLocked(key uint16) bool {
	item, ok := d.items[key]
	d.selector, d.selected, d.pos = key, item, 0
	return ok
}

// Read implements bus.Device. Byte i of the access is at offset off+i:
// offset 0 is the selector's low half, offset 1 is its high half within
// an access that starts at 0 and the data port otherwise; anything
// further reads as all ones.
func (d *Device) Read(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range data {
		switch o := off + uint64(i); {
		case o == 0:
			data[i] = byte(d.selector)
		case o == 1 && i > 0:
			data[i] = byte(d.selector >> 8)
		case o == 1:
			data[i] = 0
			if d.pos < len(d.selected) {
				data[i] = d.selected[d.pos]
				d.pos++
			}
			d.dataReads.Add(1)
		default:
			data[i] = 0xFF
		}
	}
}

// Write implements bus.Device. A write starting at offset 0 selects a key:
// its first byte is the low half, its second (if any) the high half, the
// high half 0 for a byte write; bytes past offset 1 are dropped. A write
// starting at the data port is ignored and counted.
func (d *Device) Write(off uint64, data []byte) {
	if len(data) == 0 || off >= Size {
		return
	}
	if off != 0 {
		d.dataWrites.Add(1)
		return
	}
	key := uint16(data[0])
	if len(data) >= 2 {
		key |= uint16(data[1]) << 8
	}
	d.selects.Add(1)
	d.mu.Lock()
	ok := d.selectLocked(key)
	d.mu.Unlock()
	if !ok {
		d.unknownKeys.Add(1)
	}
}

// Stats returns the counters.
func (d *Device) Stats() Stats {
	return Stats{
		Selects:     d.selects.Load(),
		DataReads:   d.dataReads.Load(),
		DataWrites:  d.dataWrites.Load(),
		UnknownKeys: d.unknownKeys.Load(),
	}
}
