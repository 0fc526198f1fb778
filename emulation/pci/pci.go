// Package pci models the PCI side of the Generation 1 chipset:
// configuration mechanism #1 (the address port at 0xCF8 and the data
// window at 0xCFC-0xCFF), bus 0 with its functions, a configuration-space
// helper with per-byte write masks, and the i440FX host bridge with its
// PAM registers, which decide whether each segment of 0xC0000-0xFFFFF
// reads ROM or RAM.
//
// Every field a guest writes is hostile: the address register is masked
// to what the mechanism defines, accesses to absent functions read all
// ones, and functions only ever see offsets inside their 256-byte space.
package pci

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// Function is one PCI function's configuration space. Offsets are below
// 256 and an access never crosses a 4-byte boundary.
type Function interface {
	ConfigRead(off uint8, data []byte)
	ConfigWrite(off uint8, data []byte)
}

// Host is configuration mechanism #1 for bus 0 (PCI Local Bus
// Specification 2.1, section 3.7.4.1). Register it on the port-I/O bus at
// 0xCF8 with size 8.
type Host struct {
	mu   sync.Mutex
	addr uint32              // CONFIG_ADDRESS; guarded by mu
	fns  map[uint16]Function // by device<<3 | function; guarded by mu
	devs map[uint16]string   // names, for errors; guarded by mu
}

// PortBase is where the host's ports start.
const PortBase = 0xCF8

// NewHost makes an empty bus 0.
func NewHost() *Host { return &Host{fns: map[uint16]Function{}, devs: map[uint16]string{}} }

// Add places f at device dev, function fn of bus 0.
func (h *Host) Add(name string, dev, fn uint8, f Function) error {
	if dev > 31 || fn > 7 {
		return fmt.Errorf("pci: %s: device %d function %d out of range", name, dev, fn)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	key := uint16(dev)<<3 | uint16(fn)
	if old, ok := h.devs[key]; ok {
		return fmt.Errorf("pci: %s: 00:%02x.%d already holds %s", name, dev, fn, old)
	}
	h.fns[key], h.devs[key] = f, name
	return nil
}

// Read implements the port interface (offset 0-3 address, 4-7 data).
func (h *Host) Read(off uint64, data []byte) {
	if off < 4 {
		h.mu.Lock()
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], h.addr)
		h.mu.Unlock()
		for i := range data {
			if o := off + uint64(i); o < 4 {
				data[i] = b[o]
			} else {
				data[i] = 0xFF
			}
		}
		return
	}
	f, reg, ok := h.target(off - 4)
	if !ok || reg%4+uint8(len(data)) > 4 {
		fill(data)
		return
	}
	f.ConfigRead(reg, data)
}

// Write implements the port interface.
func (h *Host) Write(off uint64, data []byte) {
	if off < 4 {
		// Only a dword access at 0xCF8 updates CONFIG_ADDRESS; byte and
		// word accesses there go to other chipset registers (not modelled).
		if off == 0 && len(data) == 4 {
			h.mu.Lock()
			// Bits 1:0 are reserved (read 0); bits 30:24 are reserved too.
			h.addr = binary.LittleEndian.Uint32(data) & 0x80FF_FFFC
			h.mu.Unlock()
		}
		return
	}
	f, reg, ok := h.target(off - 4)
	if !ok || reg%4+uint8(len(data)) > 4 {
		return
	}
	f.ConfigWrite(reg, data)
}

// target resolves the function and register a data-port access at byte
// dataOff (0-3) of the window addresses.
func (h *Host) target(dataOff uint64) (Function, uint8, bool) {
	h.mu.Lock()
	addr := h.addr
	h.mu.Unlock()
	if addr&0x8000_0000 == 0 || (addr>>16)&0xFF != 0 { // disabled, or not bus 0
		return nil, 0, false
	}
	h.mu.Lock()
	f, ok := h.fns[uint16(addr>>8)&0xFF]
	h.mu.Unlock()
	return f, uint8(addr&0xFC) + uint8(dataOff), ok
}

func fill(data []byte) {
	for i := range data {
		data[i] = 0xFF
	}
}

// ConfigSpace is a 256-byte configuration space with a write mask per
// byte: a bit set in the mask is writable by the guest. Functions embed it
// and react to writes of the registers they care about.
type ConfigSpace struct {
	mu   sync.Mutex
	regs [256]byte // guarded by mu
	mask [256]byte // guarded by mu
}

// Header fields.
const (
	RegVendorID     = 0x00
	RegDeviceID     = 0x02
	RegCommand      = 0x04
	RegStatus       = 0x06
	RegRevision     = 0x08
	RegClass        = 0x09 // prog-if, subclass, class: 3 bytes
	RegHeaderType   = 0x0E
	RegSubsysVID    = 0x2C
	RegSubsysID     = 0x2E
	RegInterruptPin = 0x3D
)

// InitHeader sets the identity fields of a type-0 header and makes the
// command register's I/O, memory and bus-master bits writable.
func (c *ConfigSpace) InitHeader(vendor, device uint16, revision uint8, class uint32, headerType uint8) {
	c.mu.Lock()
	defer c.mu.Unlock()
	binary.LittleEndian.PutUint16(c.regs[RegVendorID:], vendor)
	binary.LittleEndian.PutUint16(c.regs[RegDeviceID:], device)
	c.regs[RegRevision] = revision
	c.regs[RegClass], c.regs[RegClass+1], c.regs[RegClass+2] = byte(class), byte(class>>8), byte(class>>16)
	c.regs[RegHeaderType] = headerType
	c.mask[RegCommand] = 0x07
}

// SetWritable marks bytes [off, off+n) writable with the given mask.
func (c *ConfigSpace) SetWritable(off uint8, n int, mask byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < n && int(off)+i < 256; i++ {
		c.mask[int(off)+i] = mask
	}
}

// Set writes bytes directly (device-side, ignoring the mask).
func (c *ConfigSpace) Set(off uint8, b ...byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	copy(c.regs[off:], b)
}

// Get returns register bytes [off, off+n).
func (c *ConfigSpace) Get(off uint8, n int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := min(int(off)+n, 256)
	return append([]byte(nil), c.regs[off:end]...)
}

// ConfigRead implements Function.
func (c *ConfigSpace) ConfigRead(off uint8, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		if o := int(off) + i; o < 256 {
			data[i] = c.regs[o]
		} else {
			data[i] = 0xFF
		}
	}
}

// ConfigWrite implements Function: only mask bits change.
func (c *ConfigSpace) ConfigWrite(off uint8, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, b := range data {
		if o := int(off) + i; o < 256 {
			c.regs[o] = c.regs[o]&^c.mask[o] | b&c.mask[o]
		}
	}
}
