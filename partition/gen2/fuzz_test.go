package gen2

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/platform"
)

// FuzzServe throws system calls with arbitrary numbers and arguments at
// the shim, on real guest memory (no VM needed): nothing panics, nothing
// outside the partition's memory is touched, and the program's ranges
// stay inside its part of the address space.
func FuzzServe(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/fuzz/*.bin")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	const size = 8 << 20
	mem, err := guestmem.New("fuzz", size)
	if err != nil {
		f.Fatal(err)
	}
	defer mem.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		buildPageTableRoot(mem.Bytes())
		as, err := newAddressSpace(mem.Bytes(), walker{})
		if err != nil {
			t.Fatal(err)
		}
		as.add(0x400000, 0x402000, protRead|protWrite)
		p := newPartition(Config{Name: "fuzz", Memory: size, Console: io.Discard, GuestMemory: mem})
		p.as, p.brkStart, p.brk = as, 0x402000, 0x402000
		th := &thread{tid: 1}
		p.threads[1] = th
		for len(b) >= 48 {
			var a [6]uint64
			for i := range a {
				a[i] = binary.LittleEndian.Uint64(b[8*i:])
			}
			b = b[48:]
			nr := a[0] % 400
			switch nr {
			case sysNanosleep, sysFutex, sysClone, sysEpollWait, sysEpollPwait:
				continue // real sleeps, real waits, real vCPUs
			}
			p.mu.Lock()
			_, _, out := p.serve(th, nil, nr, a[1], a[2], a[3], a[4], a[5])
			p.mu.Unlock()
			if out != goOn {
				return
			}
			if p.brk < p.brkStart || p.brk >= mmapBase {
				t.Fatalf("after %d: brk %#x", nr, p.brk)
			}
			for _, v := range p.as.vmas {
				if v.start < userFloor || v.end > userTop || v.start >= v.end {
					t.Fatalf("after %d: range %#x-%#x", nr, v.start, v.end)
				}
			}
		}
	})
}

// FuzzHypercall throws arbitrary registers at the hypercall handler, on
// real guest memory with the SynIC pages mapped: nothing panics, and a
// status always comes back.
func FuzzHypercall(f *testing.F) {
	f.Add(uint64(HvCallPostMessage), uint64(0x400000), uint64(0))
	f.Add(uint64(HvCallSignalEvent|hypercallFast), uint64(0x300002005), uint64(0))
	f.Add(uint64(HvCallPartitaEOM), uint64(2), uint64(0))
	f.Add(uint64(HvCallPostMessage), uint64(SynicMessagePage), uint64(0))
	f.Add(uint64(HvCallPartitaAllocPages), uint64(3), uint64(0x400000))
	f.Add(uint64(HvCallPartitaFreePages), uint64(0x200000), uint64(3))
	f.Add(uint64(HvCallPartitaEOM), uint64(2), uint64(1)) // a message queued too (r8 is its type)
	const size = 8 << 20
	mem, err := guestmem.New("fuzz", size)
	if err != nil {
		f.Fatal(err)
	}
	defer mem.Close()
	f.Fuzz(func(t *testing.T, rcx, rdx, r8 uint64) {
		if rcx&0xFFFF == HvCallPartitaWait {
			return // real sleeps
		}
		buildPageTableRoot(mem.Bytes())
		as, err := newAddressSpace(mem.Bytes(), walker{})
		if err != nil {
			t.Fatal(err)
		}
		as.add(0x400000, 0x402000, protRead|protWrite)
		as.add(SynicMessagePage, SynicEventPage+4096, protRead|protWrite)
		p := newPartition(Config{Name: "fuzz", Memory: size, Bus: nullBus{}, GuestMemory: mem})
		p.as = as
		if st := p.hypercall(rcx, rdx, r8); st > 0xFFFF {
			t.Fatalf("status %#x", st)
		}
		p.DeliverMessage(int(rdx%20), uint32(r8), make([]byte, r8%300))
		p.SetEventFlag(int(rdx%20), uint16(r8))
	})
}

// walker stands in for a platform whose processors walk the program's
// page tables themselves (KVM's): the shim's mappings need no mirror.
// The fuzz targets run no thread.
type walker struct{}

func (walker) HypercallCode() []byte                                   { return []byte{0xC3} }
func (walker) FaultAround() uint64                                     { return 64 << 10 }
func (walker) Map(va, pa, length uint64, prot platform.Prot) error     { return nil }
func (walker) AddDoorbell(port uint16, datamatch uint32, fd int) error { return nil }
func (walker) RemoveDoorbell(port uint16, datamatch uint32) error      { return nil }
func (walker) NewThread(int, platform.Regs) (platform.Thread, error) {
	return nil, platform.ErrUnsupported
}
func (walker) Close() error { return nil }

type nullBus struct{}

func (nullBus) PostMessage(uint32, uint32, []byte) uint16 { return hvStatusSuccess }
func (nullBus) SignalEvent(uint32, uint16) uint16         { return hvStatusSuccess }
