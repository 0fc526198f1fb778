package ide

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/partita-hv/partita/vsp/disk"
)

type rig struct {
	c   *Channel
	d   *disk.Raw
	irq bool
	cmd CommandPorts
	ctl ControlPort
}

func newRig(t testing.TB, size int64) *rig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "d.raw")
	if err := disk.CreateRaw(path, size); err != nil {
		t.Fatal(err)
	}
	d, err := disk.OpenRaw(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	r := &rig{d: d}
	r.c = NewChannel(d, nil, func(l bool) { r.irq = l })
	r.cmd, r.ctl = r.c.CommandBlock(), r.c.ControlBlock()
	return r
}

func (r *rig) out(reg uint64, v byte) { r.cmd.Write(reg, []byte{v}) }
func (r *rig) in(reg uint64) byte {
	var b [1]byte
	r.cmd.Read(reg, b[:])
	return b[0]
}
func (r *rig) readData(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 2 {
		r.cmd.Read(regData, b[i:i+2])
	}
	return b
}
func (r *rig) writeData(b []byte) {
	for i := 0; i < len(b); i += 2 {
		r.cmd.Write(regData, b[i:i+2])
	}
}

// lba28 issues a 28-bit LBA command.
func (r *rig) lba28(cmd byte, lba uint32, count byte) {
	r.out(regDevice, devLBA|byte(lba>>24)&0x0F)
	r.out(regCount, count)
	r.out(regLBALow, byte(lba))
	r.out(regLBAMid, byte(lba>>8))
	r.out(regLBAHigh, byte(lba>>16))
	r.out(regStatus, cmd)
}

func TestIdentify(t *testing.T) {
	r := newRig(t, 8<<20)
	if s := r.in(regStatus); s != stDRDY|stDSC {
		t.Fatalf("status after reset %#x", s)
	}
	if r.in(regCount) != 1 || r.in(regLBALow) != 1 || r.in(regLBAMid) != 0 {
		t.Error("ATA signature missing")
	}
	r.out(regStatus, 0xEC)
	if !r.irq || r.in(regStatus)&stDRQ == 0 {
		t.Fatal("IDENTIFY: no interrupt or no data")
	}
	id := r.readData(512)
	w := func(i int) uint16 { return binary.LittleEndian.Uint16(id[2*i:]) }
	if sectors := uint32(w(60)) | uint32(w(61))<<16; sectors != 16384 {
		t.Errorf("LBA28 sectors %d", sectors)
	}
	if sectors := uint64(w(100)) | uint64(w(101))<<16; sectors != 16384 || w(83)&(1<<10) == 0 {
		t.Errorf("LBA48 sectors %d, word 83 %#x", sectors, w(83))
	}
	var sum byte
	for _, b := range id {
		sum += b
	}
	if id[510] != 0xA5 || sum != 0 {
		t.Errorf("integrity word: signature %#x sum %#x", id[510], sum)
	}
	model := make([]byte, 40)
	for i := 0; i < 20; i++ {
		model[2*i], model[2*i+1] = byte(w(27+i)>>8), byte(w(27+i))
	}
	if got := string(bytes.TrimSpace(model)); got != "Partita Virtual Disk" {
		t.Errorf("model %q", got)
	}
	if r.in(regStatus)&stDRQ != 0 {
		t.Error("DRQ still set after the data")
	}
	// No slave: status reads 0 with device 1 selected.
	r.out(regDevice, devSlave)
	if s := r.in(regStatus); s != 0 {
		t.Errorf("absent slave status %#x", s)
	}
	r.out(regStatus, 0xEC) // ignored for the absent device
	r.out(regDevice, 0)
	if r.in(regStatus)&stDRQ != 0 {
		t.Error("command to the absent slave reached the master")
	}
}

func TestReadWriteSectors(t *testing.T) {
	r := newRig(t, 8<<20)
	data := make([]byte, 3*512)
	for i := range data {
		data[i] = byte(i * 7)
	}
	r.lba28(0x30, 100, 3) // WRITE SECTORS
	r.writeData(data)
	if s := r.in(regStatus); s&(stDRQ|stERR) != 0 {
		t.Fatalf("status after write %#x", s)
	}
	got := make([]byte, len(data))
	r.d.ReadAt(got, 100*512)
	if !bytes.Equal(got, data) {
		t.Fatal("written sectors differ on disk")
	}
	// READ SECTORS EXT of the same range through the HOB registers.
	r.out(regDevice, devLBA)
	for _, reg := range []uint64{regCount, regLBALow, regLBAMid, regLBAHigh} {
		r.out(reg, 0) // high bytes first
	}
	r.out(regCount, 3)
	r.out(regLBALow, 100)
	r.out(regLBAMid, 0)
	r.out(regLBAHigh, 0)
	r.out(regStatus, 0x24)
	if back := r.readData(3 * 512); !bytes.Equal(back, data) {
		t.Fatal("READ SECTORS EXT returned other bytes")
	}
	// CHS: cylinder 0, head 1, sector 38 is LBA 1*63+37 = 100.
	r.out(regDevice, 1)
	r.out(regCount, 1)
	r.out(regLBALow, 38)
	r.out(regLBAMid, 0)
	r.out(regLBAHigh, 0)
	r.out(regStatus, 0x20)
	if back := r.readData(512); !bytes.Equal(back, data[:512]) {
		t.Fatal("CHS read returned other bytes")
	}
	r.out(regStatus, 0xE7) // FLUSH CACHE
	if s := r.in(regStatus); s&stERR != 0 {
		t.Errorf("flush status %#x", s)
	}
}

func TestErrors(t *testing.T) {
	r := newRig(t, 1<<20)  // 2048 sectors
	r.lba28(0x20, 2047, 2) // runs past the end
	if s, e := r.in(regStatus), r.in(regError); s&stERR == 0 || e != errIDNF {
		t.Errorf("past the end: status %#x error %#x", s, e)
	}
	r.out(regStatus, 0xA1) // IDENTIFY PACKET DEVICE: not ATAPI
	if s, e := r.in(regStatus), r.in(regError); s&stERR == 0 || e != errABRT {
		t.Errorf("packet identify: status %#x error %#x", s, e)
	}
	r.lba28(0xC8, 0, 1) // READ DMA on a channel without guest memory
	if e := r.in(regError); e != errABRT {
		t.Errorf("read dma without memory: error %#x", e)
	}
	// Data port outside a transfer: zeros, counted.
	if b := r.readData(4); !bytes.Equal(b, make([]byte, 4)) {
		t.Errorf("stray read % x", b)
	}
	if st := r.c.Stats(); st.StrayData != 4 || st.Aborted != 2 {
		t.Errorf("stats %+v", st)
	}
	// nIEN masks the interrupt line.
	r.ctl.Write(0, []byte{ctlNIEN})
	r.out(regStatus, 0xEF)
	if r.irq {
		t.Error("interrupt with nIEN set")
	}
	// Software reset restores the signature.
	r.ctl.Write(0, []byte{ctlSRST})
	r.ctl.Write(0, []byte{0})
	if r.in(regCount) != 1 || r.in(regStatus) != stDRDY|stDSC {
		t.Error("reset did not restore the ATA signature")
	}
}

// FuzzATA drives the command and control blocks with arbitrary accesses
// over a small disk: no panic, never a transfer outside the disk.
func FuzzATA(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newRig(t, 64<<10)
		for len(b) >= 3 {
			off := uint64(b[0] % 8)
			data := []byte{b[2], b[1]}[:1+int(b[1]&1)]
			switch {
			case b[0]&0x80 != 0:
				r.ctl.Write(0, data[:1])
			case b[0]&0x40 != 0:
				r.cmd.Read(off, data)
			default:
				r.cmd.Write(off, data)
			}
			b = b[3:]
		}
	})
}
