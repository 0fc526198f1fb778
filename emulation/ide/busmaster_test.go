package ide

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vsp/disk"
)

type dmaRig struct {
	*rig
	mem *guestmem.Memory
	bm  BusMasterPorts
}

func newDMARig(t testing.TB) *dmaRig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "d.raw")
	if err := disk.CreateRaw(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	d, err := disk.OpenRaw(path, false)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := guestmem.New(t.Name(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); mem.Close() })
	r := &rig{d: d}
	r.c = NewChannel(d, mem, func(l bool) { r.irq = l })
	r.cmd, r.ctl = r.c.CommandBlock(), r.c.ControlBlock()
	return &dmaRig{rig: r, mem: mem, bm: r.c.BusMaster()}
}

// prd writes a PRD table at gpa.
func (r *dmaRig) prd(gpa uint64, entries ...[2]uint32) {
	for i, e := range entries {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint32(b, e[0])
		binary.LittleEndian.PutUint32(b[4:], e[1])
		r.mem.WriteAt(b, gpa+uint64(8*i))
	}
}

func (r *dmaRig) bmWrite(off uint64, b ...byte) { r.bm.Write(off, b) }
func (r *dmaRig) bmStatus() byte {
	var b [1]byte
	r.bm.Read(bmStatus, b[:])
	return b[0]
}

func TestDMAReadWrite(t *testing.T) {
	r := newDMARig(t)
	data := make([]byte, 3*512)
	for i := range data {
		data[i] = byte(i * 13)
	}
	r.d.WriteAt(data, 10*512)
	// PRD table at 0x1000: 1024 bytes to 0x8000, then 512 bytes to 0x20000.
	r.prd(0x1000, [2]uint32{0x8000, 1024}, [2]uint32{0x20000, 512 | prdEOT})
	r.bmWrite(bmPRDT, 0x00, 0x10, 0, 0)
	r.lba28(0xC8, 10, 3) // READ DMA
	r.bmWrite(bmCommand, bmStart|bmToMem)
	if st := r.bmStatus(); st&bmIntr == 0 || st&(bmActive|bmError) != 0 {
		t.Fatalf("bus-master status %#x", st)
	}
	if !r.irq || r.in(regStatus)&(stERR|stBSY) != 0 {
		t.Fatal("READ DMA did not complete cleanly")
	}
	got := append(r.mem.Bytes()[0x8000:0x8400:0x8400], r.mem.Bytes()[0x20000:0x20200]...)
	if !bytes.Equal(got, data) {
		t.Fatal("DMA data differs")
	}
	r.bmWrite(bmStatus, bmIntr) // write 1 to clear
	if st := r.bmStatus(); st&bmIntr != 0 {
		t.Errorf("interrupt bit not cleared: %#x", st)
	}
	// WRITE DMA, with the bus master started before the command.
	copy(r.mem.Bytes()[0x9000:], bytes.Repeat([]byte{0x77}, 512))
	r.prd(0x1000, [2]uint32{0x9000, 512 | prdEOT})
	r.bmWrite(bmCommand, 0)
	r.bmWrite(bmCommand, bmStart)
	r.lba28(0xCA, 20, 1)
	back := make([]byte, 512)
	r.d.ReadAt(back, 20*512)
	if !bytes.Equal(back, bytes.Repeat([]byte{0x77}, 512)) {
		t.Fatal("WRITE DMA did not reach the disk")
	}
}

func TestDMAHostileTables(t *testing.T) {
	for _, c := range []struct {
		name  string
		table uint32
		ents  [][2]uint32
	}{
		{"table outside memory", 0xFFFF_0000, nil},
		{"buffer outside memory", 0x1000, [][2]uint32{{0xFFFF_F000, 512 | prdEOT}}},
		{"buffer straddling the end", 0x1000, [][2]uint32{{1<<20 - 256, 512 | prdEOT}}},
		{"table ends short", 0x1000, [][2]uint32{{0x8000, 256 | prdEOT}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newDMARig(t)
			before := append([]byte(nil), r.mem.Bytes()...)
			r.prd(uint64(c.table), c.ents...)
			if c.ents != nil {
				before = append([]byte(nil), r.mem.Bytes()...)
			}
			var pt [4]byte
			binary.LittleEndian.PutUint32(pt[:], c.table)
			r.bm.Write(bmPRDT, pt[:])
			r.lba28(0xC8, 0, 1)
			r.bmWrite(bmCommand, bmStart|bmToMem)
			if st := r.bmStatus(); st&bmError == 0 || st&bmActive != 0 {
				t.Errorf("bus-master status %#x: want error, not active", st)
			}
			if r.in(regStatus)&stERR == 0 || r.in(regError) != errABRT {
				t.Error("ATA status does not report the failure")
			}
			if c.name != "table ends short" && !bytes.Equal(r.mem.Bytes(), before) {
				t.Error("guest memory changed")
			}
			if r.c.Stats().DMAErrors != 1 {
				t.Error("DMA error not counted")
			}
		})
	}
}

// FuzzDMA lets the guest choose the PRD table and its entries, then runs
// a READ or WRITE DMA: never a panic, never an access outside memory (the
// memory accessors would refuse it; a slice past the mapping would panic).
func FuzzDMA(f *testing.F) {
	f.Fuzz(func(t *testing.T, table uint32, ents []byte, lba uint8, count uint8, write bool) {
		r := newDMARig(t)
		r.mem.WriteAt(ents[:min(len(ents), 64)], uint64(table)&0xFFFF)
		var pt [4]byte
		binary.LittleEndian.PutUint32(pt[:], table)
		r.bm.Write(bmPRDT, pt[:])
		cmd := byte(0xC8)
		if write {
			cmd = 0xCA
		}
		r.lba28(cmd, uint32(lba), count)
		r.bmWrite(bmCommand, bmStart|bmToMem)
		r.bmStatus()
	})
}
