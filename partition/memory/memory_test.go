package memory

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"
)

func newMem(t testing.TB, pages int) *Memory {
	t.Helper()
	m, err := New(t.Name(), uint64(pages)*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestBounds(t *testing.T) {
	m := newMem(t, 4)
	for _, c := range []struct {
		gpa, n uint64
		ok     bool
	}{
		{0, 0, true}, {0, 4 * PageSize, true}, {4 * PageSize, 0, true}, {4*PageSize - 1, 1, true},
		{4*PageSize - 1, 2, false}, {4*PageSize + 1, 0, false}, {1, ^uint64(0), false},
		{^uint64(0), 2, false}, {^uint64(0) - 10, 20, false},
	} {
		b, err := m.Slice(c.gpa, c.n)
		if c.ok != (err == nil) || (err == nil && uint64(len(b)) != c.n) || (err != nil && !errors.Is(err, ErrOutOfRange)) {
			t.Errorf("Slice(%#x, %#x) = %d bytes, %v", c.gpa, c.n, len(b), err)
		}
	}
	if err := m.CheckPFN(3); err != nil {
		t.Error(err)
	}
	if err := m.CheckPFN(4); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("pfn 4: %v", err)
	}
	if err := m.WriteAt([]byte("abc"), 100); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3)
	if err := m.ReadAt(got, 100); err != nil || string(got) != "abc" {
		t.Errorf("ReadAt %q %v", got, err)
	}
	if _, err := New("x", 100); !errors.Is(err, ErrUnaligned) {
		t.Errorf("unaligned size: %v", err)
	}
}

func TestWindowScattered(t *testing.T) {
	m := newMem(t, 8)
	pfns := []uint64{7, 3, 4, 5, 0}
	w, err := m.MapPages(pfns)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b := w.Bytes()
	if len(b) != len(pfns)*PageSize {
		t.Fatalf("window %d bytes", len(b))
	}
	for i, p := range pfns {
		b[i*PageSize] = byte(0x10 + i) // write through the window
		if m.Bytes()[p*PageSize] != byte(0x10+i) {
			t.Errorf("page %d: write through window not seen in memory", p)
		}
		m.Bytes()[p*PageSize+1] = byte(0x80 + i) // write through memory
		if b[i*PageSize+1] != byte(0x80+i) {
			t.Errorf("page %d: write to memory not seen in window", p)
		}
	}
	if _, err := m.MapPages([]uint64{1, 8}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("pfn past end: %v", err)
	}
	if _, err := m.MapPages(nil); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("empty: %v", err)
	}
	// A window outlives the Memory it came from.
	m.Close()
	b[0] = 1
	if err := w.Close(); err != nil || w.Close() != nil {
		t.Errorf("close: %v", err)
	}
}

func TestOpenSharesMemory(t *testing.T) {
	m := newMem(t, 2)
	m2, err := Open(dupFile(t, m.File()), 2*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	m.Bytes()[5000] = 42
	if m2.Bytes()[5000] != 42 {
		t.Error("second mapping does not see the write")
	}
	if _, err := Open(dupFile(t, m.File()), 3*PageSize); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("open larger than file: %v", err)
	}
}

// TestCrossProcess hands the memfd to a re-executed test binary, which
// writes a pattern the parent then reads.
func TestCrossProcess(t *testing.T) {
	if os.Getenv("PARTITA_MEMORY_CHILD") == "1" {
		m, err := Open(os.NewFile(3, "guest-memory"), 4*PageSize)
		if err != nil {
			os.Exit(2)
		}
		copy(m.Bytes()[3*PageSize:], "written by the child process")
		os.Exit(0)
	}
	m := newMem(t, 4)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrossProcess$")
	cmd.Env = append(os.Environ(), "PARTITA_MEMORY_CHILD=1")
	cmd.ExtraFiles = []*os.File{m.File()}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if want := []byte("written by the child process"); !bytes.HasPrefix(m.Bytes()[3*PageSize:], want) {
		t.Errorf("parent sees %q", m.Bytes()[3*PageSize:3*PageSize+28])
	}
}

func TestPageAllocator(t *testing.T) {
	a, err := NewPageAllocator(PageSize, 9*PageSize) // 8 pages
	if err != nil {
		t.Fatal(err)
	}
	x, _ := a.Alloc(3)
	y, _ := a.Alloc(5)
	if x != PageSize || y != 4*PageSize {
		t.Fatalf("allocs at %#x %#x", x, y)
	}
	if _, err := a.Alloc(1); !errors.Is(err, ErrNoSpace) {
		t.Errorf("exhausted: %v", err)
	}
	if err := a.Free(x, 3); err != nil {
		t.Fatal(err)
	}
	if err := a.Free(x, 3); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("double free: %v", err)
	}
	if err := a.Free(x+PageSize, 1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("free inside free run: %v", err)
	}
	if err := a.Free(20*PageSize, 1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("foreign free: %v", err)
	}
	if err := a.Free(y, 5); err != nil {
		t.Fatal(err)
	}
	if z, err := a.Alloc(8); err != nil || z != PageSize {
		t.Errorf("after merge: %#x %v", z, err)
	}
}

func FuzzSlice(f *testing.F) {
	m, err := New("fuzz", 4*PageSize)
	if err != nil {
		f.Fatal(err)
	}
	defer m.Close()
	f.Fuzz(func(t *testing.T, gpa, n uint64) {
		b, err := m.Slice(gpa, n)
		if err != nil {
			if !errors.Is(err, ErrOutOfRange) {
				t.Fatal(err)
			}
			return
		}
		if uint64(len(b)) != n || gpa+n > m.Size() {
			t.Fatalf("Slice(%#x,%#x) gave %d bytes", gpa, n, len(b))
		}
	})
}

func BenchmarkMapPages32(b *testing.B) {
	m := newMem(b, 256)
	pfns := make([]uint64, 32)
	for i := range pfns {
		pfns[i] = uint64((i * 37) % 256)
	}
	for b.Loop() {
		w, err := m.MapPages(pfns)
		if err != nil {
			b.Fatal(err)
		}
		w.Close()
	}
}
