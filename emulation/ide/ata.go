// Package ide models the PIIX IDE controller's ATA channels: the command
// block (0x1F0-0x1F7 for the primary channel) and control block (0x3F6)
// registers, with an ATA disk behind them on a vsp/disk backend, using PIO
// transfers.
//
// Commands (ATA/ATAPI-6): IDENTIFY DEVICE; READ SECTORS and WRITE SECTORS
// with their 48-bit EXT forms, in LBA or CHS addressing; FLUSH CACHE and
// its EXT form; SET FEATURES, SET MULTIPLE MODE, INITIALIZE DEVICE
// PARAMETERS, RECALIBRATE, EXECUTE DEVICE DIAGNOSTIC, the power-management
// commands, READ NATIVE MAX ADDRESS (and EXT). Anything else, including
// IDENTIFY PACKET DEVICE, is aborted. The LBA, count and device registers
// are two deep (the "HOB" bytes) for 48-bit commands.
//
// The guest is hostile: a transfer past the end of the disk ends with
// IDNF, a failed backend access with UNC, an unknown command with ABRT —
// never a crash. Data-port accesses outside a transfer read zeros and
// writes are dropped, counted.
//
// Bus-master DMA (READ/WRITE DMA and EXT) runs through the PRD table when
// the guest starts the bus master; every table entry and buffer is checked
// against guest memory, and a bad table ends the command with the
// bus-master error bit and ABRT instead of touching anything outside the
// partition.
//
// Left out for now: READ/WRITE MULTIPLE and the secondary channel's
// devices.
package ide

import (
	"encoding/binary"
	"errors"
	"sync"

	"github.com/partita-hv/partita/vsp/disk"
)

// Status bits.
const (
	stBSY  = 0x80
	stDRDY = 0x40
	stDSC  = 0x10
	stDRQ  = 0x08
	stERR  = 0x01
)

// Error bits.
const (
	errABRT = 0x04
	errIDNF = 0x10
	errUNC  = 0x40
)

// Command block offsets.
const (
	regData    = 0
	regError   = 1 // read; features on write
	regCount   = 2
	regLBALow  = 3
	regLBAMid  = 4
	regLBAHigh = 5
	regDevice  = 6
	regStatus  = 7 // read; command on write
)

const (
	devLBA    = 0x40
	devSlave  = 0x10
	ctlNIEN   = 0x02
	ctlSRST   = 0x04
	ctlHOB    = 0x80
	heads     = 16
	sectors   = 63
	maxCyls   = 16383
	sectorLen = disk.SectorSize
)

// Stats counts a channel's activity and the guest's mistakes.
type Stats struct {
	Commands, SectorsRead, SectorsWritten, Aborted, StrayData, DMAErrors uint64
}

// Channel is one ATA channel with up to one disk (the master).
type Channel struct {
	irq func(bool)

	mu      sync.Mutex
	disk    disk.Disk // master; nil: no device; guarded by mu
	feature [2]byte   // [current, previous]; guarded by mu
	count   [2]byte   // guarded by mu
	lbaLow  [2]byte   // guarded by mu
	lbaMid  [2]byte   // guarded by mu
	lbaHigh [2]byte   // guarded by mu
	device  byte      // guarded by mu
	status  byte      // guarded by mu
	errReg  byte      // guarded by mu
	control byte      // guarded by mu
	intrq   bool      // guarded by mu
	line    bool      // last level given to irq; guarded by mu

	// PIO transfer state; guarded by mu.
	buf      []byte // one sector
	pos      int
	writing  bool
	lba      uint64 // next sector
	left     int    // sectors remaining after the one in buf
	multiple byte

	// Bus-master DMA; guarded by mu.
	mem    GuestMemory
	bmCmd  byte
	bmStat byte
	bmPRDT uint32
	dma    dmaState

	stats Stats // guarded by mu
}

// NewChannel makes a channel whose master is d (nil: none), raising irq;
// mem is guest memory for bus-master DMA (nil: DMA commands abort).
func NewChannel(d disk.Disk, mem GuestMemory, irq func(level bool)) *Channel {
	c := &Channel{disk: d, mem: mem, irq: irq, buf: make([]byte, sectorLen)}
	if d != nil {
		c.bmStat = 1 << 5 // drive 0 DMA capable
	}
	c.resetLocked()
	return c
}

// resetLocked puts the registers in their post-reset state: the ATA
// signature (count 1, LBA 1/0/0) and, with a disk, ready.
func (c *Channel) resetLocked() {
	c.count = [2]byte{1}
	c.lbaLow, c.lbaMid, c.lbaHigh = [2]byte{1}, [2]byte{}, [2]byte{}
	c.device, c.errReg = 0, 0x01 // diagnostic: device 0 passed
	c.status = 0
	if c.disk != nil {
		c.status = stDRDY | stDSC
	}
	c.pos, c.left, c.intrq = len(c.buf), 0, false
}

// Stats returns the counters.
func (c *Channel) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// selected reports whether the addressed device exists.
func (c *Channel) selectedLocked() bool { return c.device&devSlave == 0 && c.disk != nil }

// CommandBlock returns the bus view of the eight command-block ports.
func (c *Channel) CommandBlock() CommandPorts { return CommandPorts{c} }

// ControlBlock returns the bus view of the alternate status / device
// control port.
func (c *Channel) ControlBlock() ControlPort { return ControlPort{c} }

// CommandPorts is the command block as a bus.Device (size 8).
type CommandPorts struct{ c *Channel }

// Read implements bus.Device.
func (p CommandPorts) Read(off uint64, data []byte) {
	c := p.c
	c.mu.Lock()
	if off == regData {
		c.readDataLocked(data)
	} else {
		for i := range data {
			data[i] = c.readRegLocked(off + uint64(i))
		}
	}
	c.mu.Unlock()
	c.updateIRQ()
}

// Write implements bus.Device.
func (p CommandPorts) Write(off uint64, data []byte) {
	c := p.c
	c.mu.Lock()
	if off == regData {
		c.writeDataLocked(data)
	} else {
		for i, b := range data {
			c.writeRegLocked(off+uint64(i), b)
		}
	}
	c.mu.Unlock()
	c.updateIRQ()
}

// ControlPort is the control block as a bus.Device (size 1).
type ControlPort struct{ c *Channel }

// Read returns the alternate status (does not clear the interrupt).
func (p ControlPort) Read(_ uint64, data []byte) {
	p.c.mu.Lock()
	s := p.c.statusLocked()
	p.c.mu.Unlock()
	for i := range data {
		data[i] = s
	}
}

// Write sets device control: nIEN, SRST (reset on its falling edge), HOB.
func (p ControlPort) Write(_ uint64, data []byte) {
	c := p.c
	c.mu.Lock()
	v := data[len(data)-1]
	if c.control&ctlSRST != 0 && v&ctlSRST == 0 {
		c.resetLocked()
	}
	if v&ctlSRST != 0 {
		c.status = stBSY
	}
	c.control = v
	c.mu.Unlock()
	c.updateIRQ()
}

func (c *Channel) statusLocked() byte {
	if !c.selectedLocked() {
		return 0
	}
	return c.status
}

func (c *Channel) readRegLocked(off uint64) byte {
	hob := 0
	if c.control&ctlHOB != 0 {
		hob = 1
	}
	if !c.selectedLocked() && off != regDevice {
		return 0
	}
	switch off {
	case regError:
		return c.errReg
	case regCount:
		return c.count[hob]
	case regLBALow:
		return c.lbaLow[hob]
	case regLBAMid:
		return c.lbaMid[hob]
	case regLBAHigh:
		return c.lbaHigh[hob]
	case regDevice:
		return c.device | 0xA0
	case regStatus:
		c.intrq = false // reading status acknowledges the interrupt
		return c.status
	}
	return 0xFF
}

func push(r *[2]byte, b byte) { r[1], r[0] = r[0], b }

func (c *Channel) writeRegLocked(off uint64, b byte) {
	c.control &^= ctlHOB // a register write clears HOB
	switch off {
	case regError:
		push(&c.feature, b)
	case regCount:
		push(&c.count, b)
	case regLBALow:
		push(&c.lbaLow, b)
	case regLBAMid:
		push(&c.lbaMid, b)
	case regLBAHigh:
		push(&c.lbaHigh, b)
	case regDevice:
		c.device = b & 0x5F
	case regStatus:
		if c.selectedLocked() {
			c.commandLocked(b)
		}
	}
}

// commandLocked starts an ATA command.
func (c *Channel) commandLocked(cmd byte) {
	c.stats.Commands++
	c.errReg = 0
	c.status = stDRDY | stDSC
	c.pos, c.left = len(c.buf), 0
	switch cmd {
	case 0xEC: // IDENTIFY DEVICE
		c.identifyLocked()
		c.pos, c.writing = 0, false
		c.status |= stDRQ
		c.intrq = true
	case 0x20, 0x21, 0x24: // READ SECTORS (w/o retry), READ SECTORS EXT
		c.startTransferLocked(cmd == 0x24, false)
	case 0x30, 0x31, 0x34: // WRITE SECTORS, WRITE SECTORS EXT
		c.startTransferLocked(cmd == 0x34, true)
	case 0xC8, 0xC9, 0x25: // READ DMA (w/o retry), READ DMA EXT
		c.startDMALocked(cmd == 0x25, true)
	case 0xCA, 0xCB, 0x35: // WRITE DMA, WRITE DMA EXT
		c.startDMALocked(cmd == 0x35, false)
	case 0xE7, 0xEA: // FLUSH CACHE (EXT)
		if err := c.disk.Flush(); err != nil {
			c.failLocked(errUNC)
			return
		}
		c.intrq = true
	case 0xF8, 0x27: // READ NATIVE MAX ADDRESS (EXT)
		max := uint64(c.disk.Size()/sectorLen) - 1
		c.setLBALocked(max, cmd == 0x27)
		c.intrq = true
	case 0x90: // EXECUTE DEVICE DIAGNOSTIC
		c.resetLocked()
		c.intrq = true
	case 0xC6: // SET MULTIPLE MODE
		c.multiple = c.count[0]
		c.intrq = true
	case 0xE5: // CHECK POWER MODE: active
		c.count[0] = 0xFF
		c.intrq = true
	case 0xEF, 0x91, 0x10, 0xE0, 0xE1, 0xE2, 0xE3: // SET FEATURES, INITIALIZE DEVICE PARAMETERS, RECALIBRATE, idle/standby
		c.intrq = true
	default: // including IDENTIFY PACKET DEVICE (0xA1): not an ATAPI device
		c.failLocked(errABRT)
	}
}

func (c *Channel) failLocked(e byte) {
	c.errReg = e
	c.status = stDRDY | stDSC | stERR
	c.pos, c.left = len(c.buf), 0
	c.intrq = true
	if e == errABRT {
		c.stats.Aborted++
	}
}

// addressLocked decodes the starting sector and count of a transfer.
func (c *Channel) addressLocked(ext bool) (lba uint64, n int, ok bool) {
	if ext {
		lba = uint64(c.lbaLow[0]) | uint64(c.lbaMid[0])<<8 | uint64(c.lbaHigh[0])<<16 |
			uint64(c.lbaLow[1])<<24 | uint64(c.lbaMid[1])<<32 | uint64(c.lbaHigh[1])<<40
		n = int(c.count[1])<<8 | int(c.count[0])
		if n == 0 {
			n = 65536
		}
		return lba, n, true
	}
	n = int(c.count[0])
	if n == 0 {
		n = 256
	}
	if c.device&devLBA != 0 {
		lba = uint64(c.lbaLow[0]) | uint64(c.lbaMid[0])<<8 | uint64(c.lbaHigh[0])<<16 | uint64(c.device&0x0F)<<24
		return lba, n, true
	}
	// CHS: cylinder in mid/high, head in the device register, sector 1-based.
	cyl := uint64(c.lbaMid[0]) | uint64(c.lbaHigh[0])<<8
	head, sec := uint64(c.device&0x0F), uint64(c.lbaLow[0])
	if sec == 0 || sec > sectors || head >= heads {
		return 0, 0, false
	}
	return (cyl*heads+head)*sectors + sec - 1, n, true
}

func (c *Channel) setLBALocked(lba uint64, ext bool) {
	c.lbaLow[0], c.lbaMid[0], c.lbaHigh[0] = byte(lba), byte(lba>>8), byte(lba>>16)
	if ext {
		c.lbaLow[1], c.lbaMid[1], c.lbaHigh[1] = byte(lba>>24), byte(lba>>32), byte(lba>>40)
	} else {
		c.device = c.device&0xF0 | byte(lba>>24)&0x0F
	}
}

func (c *Channel) startTransferLocked(ext, write bool) {
	lba, n, ok := c.addressLocked(ext)
	total := uint64(c.disk.Size() / sectorLen)
	if !ok || lba >= total || uint64(n) > total-lba {
		c.failLocked(errIDNF)
		return
	}
	if write && c.disk.ReadOnly() {
		c.failLocked(errABRT)
		return
	}
	c.lba, c.left, c.writing = lba, n-1, write
	c.pos = 0
	if write {
		c.status |= stDRQ // the first sector needs no interrupt
		return
	}
	c.loadSectorLocked()
}

// loadSectorLocked reads sector c.lba into the buffer and raises DRQ.
func (c *Channel) loadSectorLocked() {
	if _, err := c.disk.ReadAt(c.buf, int64(c.lba)*sectorLen); err != nil {
		c.failLocked(errUNCorIDNF(err))
		return
	}
	c.stats.SectorsRead++
	c.pos = 0
	c.status = stDRDY | stDSC | stDRQ
	c.intrq = true
}

func errUNCorIDNF(err error) byte {
	if errors.Is(err, disk.ErrOutOfRange) {
		return errIDNF
	}
	return errUNC
}

func (c *Channel) readDataLocked(data []byte) {
	for i := range data {
		if c.writing || c.pos >= len(c.buf) {
			data[i] = 0
			c.stats.StrayData++
			continue
		}
		data[i] = c.buf[c.pos]
		c.pos++
		if c.pos == len(c.buf) {
			c.status &^= stDRQ
			if c.left > 0 {
				c.left--
				c.lba++
				c.loadSectorLocked()
			}
		}
	}
}

func (c *Channel) writeDataLocked(data []byte) {
	for _, b := range data {
		if !c.writing || c.pos >= len(c.buf) {
			c.stats.StrayData++
			continue
		}
		c.buf[c.pos] = b
		c.pos++
		if c.pos < len(c.buf) {
			continue
		}
		if _, err := c.disk.WriteAt(c.buf, int64(c.lba)*sectorLen); err != nil {
			c.failLocked(errUNCorIDNF(err))
			return
		}
		c.stats.SectorsWritten++
		c.intrq = true
		if c.left > 0 {
			c.left--
			c.lba++
			c.pos = 0
			c.status = stDRDY | stDSC | stDRQ
		} else {
			c.status = stDRDY | stDSC
			c.writing = false
		}
	}
}

// identifyLocked fills the buffer with IDENTIFY DEVICE data (ATA/ATAPI-6,
// section 8.15).
func (c *Channel) identifyLocked() {
	w := make([]uint16, 256)
	total := uint64(c.disk.Size() / sectorLen)
	cyls := min(total/(heads*sectors), maxCyls)
	lba28 := min(total, 0x0FFFFFFF)
	w[0] = 0x0040 // fixed device
	w[1], w[3], w[6] = uint16(cyls), heads, sectors
	putString(w[10:20], "PARTITA0000000000001")
	putString(w[23:27], "1.0")
	putString(w[27:47], "Partita Virtual Disk")
	w[47] = 0x8010      // READ/WRITE MULTIPLE: up to 16 sectors
	w[49] = 1<<9 | 1<<8 // LBA, DMA
	w[53] = 1<<1 | 1<<2 // words 64-70 and 88 valid
	w[54], w[55], w[56] = uint16(cyls), heads, sectors
	chs := cyls * heads * sectors
	w[57], w[58] = uint16(chs), uint16(chs>>16)
	w[59] = 0x0100 | uint16(c.multiple)
	w[60], w[61] = uint16(lba28), uint16(lba28>>16)
	w[64] = 0x0003 // PIO modes 3 and 4
	w[80] = 0x007E // ATA-1 to ATA-6
	w[82], w[83], w[84] = 1<<14, 1<<14|1<<13|1<<12|1<<10, 1<<14
	w[85], w[86], w[87] = 1<<14, 1<<13|1<<12|1<<10, 1<<14
	w[100], w[101], w[102], w[103] = uint16(total), uint16(total>>16), uint16(total>>32), uint16(total>>48)
	for i, v := range w {
		binary.LittleEndian.PutUint16(c.buf[2*i:], v)
	}
	// Word 255: signature 0xA5 and a checksum making all bytes sum to 0.
	c.buf[510] = 0xA5
	var sum byte
	for _, b := range c.buf[:511] {
		sum += b
	}
	c.buf[511] = -sum
}

// putString stores an ATA string: two characters per word, first in the
// high byte, space padded.
func putString(w []uint16, s string) {
	for i := range w {
		hi, lo := byte(' '), byte(' ')
		if 2*i < len(s) {
			hi = s[2*i]
		}
		if 2*i+1 < len(s) {
			lo = s[2*i+1]
		}
		w[i] = uint16(hi)<<8 | uint16(lo)
	}
}

// updateIRQ drives the channel's interrupt line: INTRQ pending and not
// masked by nIEN.
func (c *Channel) updateIRQ() {
	c.mu.Lock()
	level := c.intrq && c.control&ctlNIEN == 0
	changed := level != c.line
	c.line = level
	c.mu.Unlock()
	if changed && c.irq != nil {
		c.irq(level)
	}
}
