package ide

import (
	"encoding/binary"
	"fmt"
)

// GuestMemory is what bus-master DMA needs of the partition's memory:
// bounds-checked access by guest physical address (*guestmem.Memory).
// If it also has Wrote(gpa, length uint64), it hears of every range a
// transfer to memory filled, after the bytes are there.
type GuestMemory interface {
	Slice(gpa, length uint64) ([]byte, error)
}

// writeWatcher is a GuestMemory that hears of DMA writes.
type writeWatcher interface {
	Wrote(gpa, length uint64)
}

// Bus-master IDE registers (82371SB section 5.2), per channel, offsets
// from the channel's block in BAR4.
const (
	bmCommand = 0 // bit 0 start/stop, bit 3 direction (1: device to memory)
	bmStatus  = 2 // bit 0 active, bit 1 error, bit 2 interrupt (write 1 to clear), bits 5-6 DMA capable
	bmPRDT    = 4 // physical region descriptor table address, dword aligned

	bmStart   = 1 << 0
	bmToMem   = 1 << 3
	bmActive  = 1 << 0
	bmError   = 1 << 1
	bmIntr    = 1 << 2
	bmCapable = 3 << 5

	prdEOT        = 1 << 31 // in the entry's second dword
	maxPRDEntries = 8192    // the table may not cross a 64 KiB boundary
)

// dmaState is a DMA command waiting for, or running under, the bus master.
type dmaState struct {
	pending bool
	toMem   bool // READ DMA: disk to guest memory
	lba     uint64
	count   int // sectors
}

// BusMaster returns the channel's bus-master register block as a
// bus.Device (8 bytes), for the owner to place at BAR4.
func (c *Channel) BusMaster() BusMasterPorts { return BusMasterPorts{c} }

// BusMasterPorts is the bus-master block as a bus.Device.
type BusMasterPorts struct{ c *Channel }

// Read implements bus.Device.
func (p BusMasterPorts) Read(off uint64, data []byte) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	var regs [8]byte
	regs[bmCommand] = c.bmCmd
	regs[bmStatus] = c.bmStat
	binary.LittleEndian.PutUint32(regs[bmPRDT:], c.bmPRDT)
	for i := range data {
		if o := off + uint64(i); o < 8 {
			data[i] = regs[o]
		} else {
			data[i] = 0xFF
		}
	}
}

// Write implements bus.Device.
func (p BusMasterPorts) Write(off uint64, data []byte) {
	c := p.c
	c.mu.Lock()
	for i, b := range data {
		switch o := off + uint64(i); {
		case o == bmCommand:
			was := c.bmCmd&bmStart != 0
			c.bmCmd = b & (bmStart | bmToMem)
			if !was && b&bmStart != 0 {
				c.bmStat |= bmActive
				c.runDMALocked()
			} else if b&bmStart == 0 {
				c.bmStat &^= bmActive
			}
		case o == bmStatus:
			// Active is read-only; error and interrupt are write-1-to-clear;
			// the DMA-capable bits are read/write.
			c.bmStat = c.bmStat&bmActive | c.bmStat&(bmError|bmIntr)&^b | b&bmCapable
		case o >= bmPRDT && o < bmPRDT+4:
			shift := 8 * (o - bmPRDT)
			c.bmPRDT = c.bmPRDT&^(0xFF<<shift) | uint32(b)<<shift
			c.bmPRDT &^= 3
		}
	}
	c.mu.Unlock()
	c.updateIRQ()
}

// startDMALocked records a READ/WRITE DMA command; the transfer runs when
// the bus master is started (or at once if it already is).
func (c *Channel) startDMALocked(ext, toMem bool) {
	lba, n, ok := c.addressLocked(ext)
	total := uint64(c.disk.Size() / sectorLen)
	if !ok || lba >= total || uint64(n) > total-lba {
		c.failLocked(errIDNF)
		return
	}
	if !toMem && c.disk.ReadOnly() {
		c.failLocked(errABRT)
		return
	}
	if c.mem == nil {
		c.failLocked(errABRT)
		return
	}
	c.dma = dmaState{pending: true, toMem: toMem, lba: lba, count: n}
	c.status = stDRDY | stDSC | stBSY
	if c.bmCmd&bmStart != 0 {
		c.runDMALocked()
	}
}

// runDMALocked performs a pending DMA transfer through the PRD table.
func (c *Channel) runDMALocked() {
	if !c.dma.pending {
		return
	}
	d := c.dma
	c.dma = dmaState{}
	err := c.transferLocked(d)
	c.bmStat &^= bmActive
	c.bmStat |= bmIntr
	if err != nil {
		c.bmStat |= bmError
		c.stats.DMAErrors++
		c.failLocked(errABRT)
		return
	}
	c.status = stDRDY | stDSC
	c.intrq = true
}

// transferLocked walks the PRD table: each entry is a buffer address
// (u32, even), a byte count (u16, 0 meaning 64 KiB) and the end-of-table
// flag. Every region is checked against guest memory; the regions must
// cover the transfer exactly or with room to spare.
func (c *Channel) transferLocked(d dmaState) error {
	left := int64(d.count) * sectorLen
	pos := int64(d.lba) * sectorLen
	table := uint64(c.bmPRDT)
	for i := 0; left > 0; i++ {
		if i == maxPRDEntries {
			return fmt.Errorf("ide: PRD table longer than %d entries", maxPRDEntries)
		}
		ent, err := c.mem.Slice(table+uint64(8*i), 8)
		if err != nil {
			return fmt.Errorf("ide: PRD entry %d: %w", i, err)
		}
		addr := uint64(binary.LittleEndian.Uint32(ent) &^ 1)
		flags := binary.LittleEndian.Uint32(ent[4:])
		n := int64(flags & 0xFFFF)
		if n == 0 {
			n = 64 << 10
		}
		n = min(n, left)
		buf, err := c.mem.Slice(addr, uint64(n))
		if err != nil {
			return fmt.Errorf("ide: PRD entry %d buffer: %w", i, err)
		}
		if d.toMem {
			_, err = c.disk.ReadAt(buf, pos)
			if w, ok := c.mem.(writeWatcher); ok {
				w.Wrote(addr, uint64(n))
			}
		} else {
			_, err = c.disk.WriteAt(buf, pos)
		}
		if err != nil {
			return err
		}
		pos += n
		left -= n
		if left > 0 && flags&prdEOT != 0 {
			return fmt.Errorf("ide: PRD table ends %d bytes short", left)
		}
	}
	if d.toMem {
		c.stats.SectorsRead += uint64(d.count)
	} else {
		c.stats.SectorsWritten += uint64(d.count)
	}
	return nil
}
