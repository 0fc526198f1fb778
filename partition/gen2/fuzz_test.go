package gen2

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/partita-hv/partita/partition/memory"
)

// FuzzServe throws system calls with arbitrary numbers and arguments at
// the shim, on real guest memory (no VM needed): nothing panics, nothing
// outside the program's memory is touched (memory.Memory's bounds), and
// the program break and mapping pointers stay inside the program's part
// of memory.
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
	mem, err := memory.New("fuzz", size)
	if err != nil {
		f.Fatal(err)
	}
	defer mem.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := &Partition{cfg: Config{Name: "fuzz", Memory: size, Console: io.Discard}, mem: mem,
			brkStart: userBase + 0x10000, brk: userBase + 0x10000, mmapFloor: userBase + 0x10000, mmapTop: size - stackSize}
		for len(b) >= 48 {
			var a [6]uint64
			for i := range a {
				a[i] = binary.LittleEndian.Uint64(b[8*i:])
			}
			b = b[48:]
			nr := a[0] % 400
			if nr == sysNanosleep {
				continue // sleeps are real
			}
			if _, exit := p.serve(nr, a[1], a[2], a[3], a[4], a[5]); exit != nil {
				return
			}
			if p.brk < p.brkStart || p.brk > size || p.mmapTop > size-stackSize || p.mmapTop < userBase {
				t.Fatalf("after %d: brk %#x mmapTop %#x", nr, p.brk, p.mmapTop)
			}
		}
	})
}
