// Package fwcfg models QEMU's firmware configuration device (fw_cfg), the
// interface SeaBIOS uses on a QEMU/KVM machine to learn the RAM size, the
// e820 map, the CPU count, the boot order and its own settings (for
// example "etc/sercon-port", which turns on its serial console).
//
// Only the traditional I/O interface is modelled (QEMU's
// docs/specs/fw_cfg.rst): a 16-bit selector register at port 0x510 and an
// 8-bit data register at 0x511. Writing a key to the selector chooses an
// item and rewinds it; each data read returns its next byte, 0 past the
// end. The feature bitmap (key 0x01) says so: no DMA interface, and the
// data register is read-only.
package fwcfg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// Ports, relative to Base.
const (
	Base = 0x510
	Size = 2 // selector (offset 0, 16-bit) and data (offset 1, 8-bit)
)

// Standard keys.
const (
	KeySignature = 0x00
	KeyID        = 0x01
	KeyRAMSize   = 0x03
	KeyNoGraphic = 0x04
	KeyNBCPUs    = 0x05
	KeyNUMA      = 0x0D
	KeyBootMenu  = 0x0E
	KeyMaxCPUs   = 0x0F
	KeyFileDir   = 0x19
	keyFileFirst = 0x20

	featureTraditional = 1 << 0
	maxName            = 56
	maxTotal           = 64 << 20
)

// E820 entry types.
const (
	E820RAM      = 1
	E820Reserved = 2
)

// E820Entry is one range of the e820 map.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// E820 encodes entries as QEMU's "etc/e820" file: packed 20-byte records
// of address u64, length u64, type u32, little-endian.
func E820(entries []E820Entry) []byte {
	var b []byte
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint64(b, e.Addr)
		b = binary.LittleEndian.AppendUint64(b, e.Size)
		b = binary.LittleEndian.AppendUint32(b, e.Type)
	}
	return b
}

// Stats counts accesses the guest should not make.
type Stats struct {
	Selects, DataWrites, UnknownKeys uint64
}

// Device is the fw_cfg device.
type Device struct {
	mu       sync.Mutex
	items    map[uint16][]byte // guarded by mu
	files    []file            // guarded by mu
	total    int               // bytes held; guarded by mu
	selected []byte            // guarded by mu
	pos      int               // guarded by mu
	selector uint16            // guarded by mu

	selects, dataWrites, unknownKeys atomic.Uint64
}

type file struct {
	name string
	key  uint16
}

// ErrItem: an item that cannot be added.
var ErrItem = errors.New("fwcfg: bad item")

// New makes a device holding the signature and feature items, with the
// signature selected.
func New() *Device {
	d := &Device{items: map[uint16][]byte{}}
	d.items[KeySignature] = []byte("QEMU")
	d.items[KeyID] = binary.LittleEndian.AppendUint32(nil, featureTraditional)
	d.items[KeyFileDir] = d.directory()
	d.selected = d.items[KeySignature] // reset selects key 0, as QEMU's does
	return d
}

// AddItem sets a fixed-key item.
func (d *Device) AddItem(key uint16, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if key == KeyFileDir || key >= keyFileFirst {
		return fmt.Errorf("%w: key %#x is reserved for files", ErrItem, key)
	}
	if _, dup := d.items[key]; dup {
		return fmt.Errorf("%w: key %#x already set", ErrItem, key)
	}
	return d.putLocked(key, data)
}

// AddFile adds a named file, which gets the next file key; the directory
// lists files sorted by name, as QEMU's does.
func (d *Device) AddFile(name string, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if name == "" || len(name) >= maxName {
		return fmt.Errorf("%w: file name %q (1..%d bytes)", ErrItem, name, maxName-1)
	}
	for _, f := range d.files {
		if f.name == name {
			return fmt.Errorf("%w: file %q already exists", ErrItem, name)
		}
	}
	key := uint16(keyFileFirst + len(d.files))
	if err := d.putLocked(key, data); err != nil {
		return err
	}
	d.files = append(d.files, file{name, key})
	sort.Slice(d.files, func(i, j int) bool { return d.files[i].name < d.files[j].name })
	d.items[KeyFileDir] = d.directory()
	return nil
}

func (d *Device) putLocked(key uint16, data []byte) error {
	if d.total+len(data) > maxTotal {
		return fmt.Errorf("%w: more than %d bytes of items", ErrItem, maxTotal)
	}
	d.total += len(data)
	d.items[key] = append([]byte(nil), data...)
	return nil
}

// directory encodes the file directory: count u32, then per file size
// u32, select u16, reserved u16, name[56], all big-endian.
func (d *Device) directory() []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(d.files)))
	for _, f := range d.files {
		b = binary.BigEndian.AppendUint32(b, uint32(len(d.items[f.key])))
		b = binary.BigEndian.AppendUint16(b, f.key)
		b = append(b, 0, 0)
		var name [maxName]byte
		copy(name[:], f.name)
		b = append(b, name[:]...)
	}
	return b
}

// Read implements bus.Device.
func (d *Device) Read(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range data {
		switch off + uint64(i) {
		case 0: // selector: reads return the selected key, low byte first
			data[i] = byte(d.selector)
		case 1:
			if i > 0 { // the selector's high byte in a 16-bit read of 0x510
				data[i] = byte(d.selector >> 8)
			} else if d.pos < len(d.selected) {
				data[i] = d.selected[d.pos]
				d.pos++
			} else {
				data[i] = 0
			}
		default:
			data[i] = 0xFF
		}
	}
}

// Write implements bus.Device: a 16-bit write to the selector picks a key
// (a byte write sets its low half, the high half zero); data writes are
// ignored and counted.
func (d *Device) Write(off uint64, data []byte) {
	if off != 0 || len(data) == 0 {
		d.dataWrites.Add(1)
		return
	}
	key := uint16(data[0])
	if len(data) >= 2 {
		key |= uint16(data[1]) << 8
	}
	d.selects.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.selector = key
	item, ok := d.items[key]
	if !ok {
		d.unknownKeys.Add(1)
	}
	d.selected, d.pos = item, 0
}

// Stats returns the counters.
func (d *Device) Stats() Stats {
	return Stats{Selects: d.selects.Load(), DataWrites: d.dataWrites.Load(), UnknownKeys: d.unknownKeys.Load()}
}
