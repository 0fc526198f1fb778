// Package bus routes a guest's port-I/O and MMIO accesses to the emulated
// devices that own the addresses: one Bus per address space, each a sorted
// list of non-overlapping ranges. A device is called with the offset of
// the access from the start of its range, so it never sees (or needs to
// know) where it was placed.
//
// An access no device owns — or one that runs past the end of the owner's
// range — reads as all ones and its writes are dropped, as on a PC bus
// with nothing decoding the address; each is counted. Guests probe unused
// ports all the time, so this is not an error.
//
// Registration happens while a partition is being built; lookups come from
// every vCPU thread at once and take a read lock. Devices do their own
// locking.
package bus

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// Device is an emulated device's register interface. len(data) is the
// access size (1, 2 or 4 for port I/O; 1 to 8 for MMIO). Read fills data;
// Write consumes it. Both must tolerate any value in any register: the
// guest is hostile.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// ErrOverlap: a registration that would share an address with another.
var ErrOverlap = errors.New("bus: range overlaps a registered device")

// Stats counts a bus's traffic.
type Stats struct {
	Reads, Writes   uint64
	UnhandledReads  uint64 // read as all ones
	UnhandledWrites uint64 // dropped
}

// Bus is one address space.
type Bus struct {
	name string

	// mu serializes changes; readers load entries without it. A change
	// publishes a new slice (sorted by base, non-overlapping), so an
	// access sees the map before or after it, never half of it.
	mu      sync.Mutex
	entries atomic.Pointer[[]entry]

	reads, writes, unhandledReads, unhandledWrites atomic.Uint64
}

type entry struct {
	base, size uint64
	name       string
	dev        Device
}

// New makes an empty bus; name is for errors ("pio", "mmio").
func New(name string) *Bus { return &Bus{name: name} }

// Register places dev at [base, base+size).
func (b *Bus) Register(name string, base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("bus %s: %s: bad range %#x+%#x", b.name, name, base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.list()
	i := sort.Search(len(old), func(i int) bool { return old[i].base >= base })
	if i < len(old) && old[i].base < base+size {
		e := old[i]
		return fmt.Errorf("%w: %s %#x+%#x and %s %#x+%#x on %s", ErrOverlap, name, base, size, e.name, e.base, e.size, b.name)
	}
	if i > 0 && old[i-1].base+old[i-1].size > base {
		e := old[i-1]
		return fmt.Errorf("%w: %s %#x+%#x and %s %#x+%#x on %s", ErrOverlap, name, base, size, e.name, e.base, e.size, b.name)
	}
	list := make([]entry, 0, len(old)+1)
	list = append(append(append(list, old[:i]...), entry{base: base, size: size, name: name, dev: dev}), old[i:]...)
	b.entries.Store(&list)
	return nil
}

// Unregister removes the device registered at base.
func (b *Bus) Unregister(base uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.list()
	i := sort.Search(len(old), func(i int) bool { return old[i].base >= base })
	if i == len(old) || old[i].base != base {
		return fmt.Errorf("bus %s: nothing registered at %#x", b.name, base)
	}
	list := append(append(make([]entry, 0, len(old)-1), old[:i]...), old[i+1:]...)
	b.entries.Store(&list)
	return nil
}

// list is the current map.
func (b *Bus) list() []entry {
	if l := b.entries.Load(); l != nil {
		return *l
	}
	return nil
}

// find returns the device owning the whole access [addr, addr+n). It
// runs on every access: no lock, no allocation.
func (b *Bus) find(addr uint64, n int) (Device, uint64, bool) {
	list := b.list()
	// The last entry whose base is at most addr.
	lo, hi := 0, len(list)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if list[mid].base <= addr {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return nil, 0, false
	}
	e := &list[lo-1]
	off := addr - e.base
	if off >= e.size || uint64(n) > e.size-off {
		return nil, 0, false
	}
	return e.dev, off, true
}

// Read performs a guest read of len(data) bytes at addr.
func (b *Bus) Read(addr uint64, data []byte) {
	b.reads.Add(1)
	if dev, off, ok := b.find(addr, len(data)); ok {
		dev.Read(off, data)
		return
	}
	b.unhandledReads.Add(1)
	for i := range data {
		data[i] = 0xFF
	}
}

// Write performs a guest write of data at addr.
func (b *Bus) Write(addr uint64, data []byte) {
	b.writes.Add(1)
	if dev, off, ok := b.find(addr, len(data)); ok {
		dev.Write(off, data)
		return
	}
	b.unhandledWrites.Add(1)
}

// Stats returns the counters.
func (b *Bus) Stats() Stats {
	return Stats{Reads: b.reads.Load(), Writes: b.writes.Load(), UnhandledReads: b.unhandledReads.Load(), UnhandledWrites: b.unhandledWrites.Load()}
}
