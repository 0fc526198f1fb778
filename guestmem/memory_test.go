package guestmem

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
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

// dupFile returns a new *os.File on a dup of f's descriptor.
func dupFile(t testing.TB, f *os.File) *os.File {
	t.Helper()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), f.Name())
}

// pattern is the byte at offset off of page pfn in a filled memory; seed
// tells fills apart. Every page's pattern differs from every other's.
func pattern(seed byte, pfn uint64, off int) byte {
	return byte(pfn)*31 + byte(off) + byte(off>>8)*7 + seed
}

func page(seed byte, pfn uint64) []byte {
	p := make([]byte, PageSize)
	for i := range p {
		p[i] = pattern(seed, pfn, i)
	}
	return p
}

// fill writes page(seed, pfn) into every page of b.
func fill(b []byte, seed byte) {
	for pfn := uint64(0); pfn < uint64(len(b))/PageSize; pfn++ {
		copy(b[pfn*PageSize:], page(seed, pfn))
	}
}

func pageOf(b []byte, i uint64) []byte { return b[i*PageSize : (i+1)*PageSize] }

// isClosed reports whether f's descriptor has been closed.
func isClosed(f *os.File) bool {
	_, err := f.Stat()
	return errors.Is(err, os.ErrClosed)
}

func TestNew(t *testing.T) {
	for _, c := range []struct {
		size uint64
		want error
	}{
		{0, ErrInvalidSize},
		{100, ErrUnaligned},
		{PageSize + 1, ErrUnaligned},
		{1 << 63, ErrInvalidSize}, // does not fit ftruncate's off_t
		{math.MaxUint64 &^ (PageSize - 1), ErrInvalidSize},
	} {
		if m, err := New("bad", c.size); !errors.Is(err, c.want) {
			t.Errorf("New(size %#x) = %v, %v; want %v", c.size, m, err, c.want)
		}
	}

	m := newMem(t, 3)
	if m.Size() != 3*PageSize || m.Pages() != 3 || len(m.Bytes()) != 3*PageSize {
		t.Fatalf("size %#x, pages %d, %d bytes mapped", m.Size(), m.Pages(), len(m.Bytes()))
	}
	if !bytes.Equal(m.Bytes(), make([]byte, 3*PageSize)) {
		t.Error("new memory is not zero")
	}
	fd := int(m.File().Fd())
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	if want := "/memfd:partita:TestNew (deleted)"; link != want {
		t.Errorf("fd links to %q, want %q", link, want)
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Errorf("F_GETFD = %#x, %v; want FD_CLOEXEC", fl, err)
	}
	got, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil || got&seals != seals {
		t.Errorf("seals %#x, %v; want %#x", got, err, seals)
	}
	// The seals hold: no holder of the memfd can change its size.
	if err := m.File().Truncate(PageSize); err == nil {
		t.Error("shrinking the sealed memfd succeeded")
	}
	if err := m.File().Truncate(8 * PageSize); err == nil {
		t.Error("growing the sealed memfd succeeded")
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_FUTURE_WRITE); err == nil {
		t.Error("adding a seal after F_SEAL_SEAL succeeded")
	}

	// Names past the kernel's limit are cut, not refused.
	long, err := New(strings.Repeat("x", 400), PageSize)
	if err != nil {
		t.Fatalf("long name: %v", err)
	}
	long.Close()
}

func TestSliceBounds(t *testing.T) {
	const size = 4 * PageSize
	const max = math.MaxUint64
	m := newMem(t, 4)
	for _, c := range []struct {
		gpa, n uint64
		ok     bool
	}{
		{0, 0, true},
		{0, size, true},
		{size, 0, true}, // zero length exactly at the end
		{size - 1, 1, true},
		{size - PageSize, PageSize, true},
		{123, 456, true},
		{size - 1, 2, false},
		{size, 1, false},
		{size + 1, 0, false},
		{0, size + 1, false},
		{1, size, false},
		{1, max, false},
		{2, max - 1, false}, // gpa+n wraps to exactly 0
		{max - size + 1, size, false},
		{size, max, false},
		{max, 0, false},
		{max, 1, false},
		{max, max, false},
		{max - 10, 20, false}, // wraps to 9
		{1 << 52, PageSize, false},
	} {
		b, err := m.Slice(c.gpa, c.n)
		if !c.ok {
			if !errors.Is(err, ErrOutOfRange) || b != nil {
				t.Errorf("Slice(%#x, %#x) = %d bytes, %v; want ErrOutOfRange", c.gpa, c.n, len(b), err)
			}
			continue
		}
		if err != nil || uint64(len(b)) != c.n || uint64(cap(b)) != c.n {
			t.Errorf("Slice(%#x, %#x) = len %d cap %d, %v", c.gpa, c.n, len(b), cap(b), err)
			continue
		}
		if c.n > 0 {
			b[0] = 0xa5
			first := m.Bytes()[c.gpa]
			b[c.n-1] = 0x5a
			if first != 0xa5 || m.Bytes()[c.gpa+c.n-1] != 0x5a {
				t.Errorf("Slice(%#x, %#x) does not alias guest memory at gpa", c.gpa, c.n)
			}
		}
	}
}

func TestReadWriteAt(t *testing.T) {
	m := newMem(t, 2)
	const size = 2 * PageSize
	msg := []byte("guest physical")
	for _, gpa := range []uint64{0, PageSize - 3, size - uint64(len(msg))} {
		if err := m.WriteAt(msg, gpa); err != nil {
			t.Fatalf("WriteAt %#x: %v", gpa, err)
		}
		got := make([]byte, len(msg))
		if err := m.ReadAt(got, gpa); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("ReadAt %#x = %q, %v", gpa, got, err)
		}
		if !bytes.Equal(m.Bytes()[gpa:gpa+uint64(len(msg))], msg) {
			t.Errorf("WriteAt %#x not in Bytes", gpa)
		}
	}
	// A write straddling the end writes nothing at all.
	clear(m.Bytes())
	if err := m.WriteAt([]byte("abcd"), size-2); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("straddling WriteAt: %v", err)
	}
	if m.Bytes()[size-2] != 0 || m.Bytes()[size-1] != 0 {
		t.Error("straddling WriteAt wrote part of its bytes")
	}
	// A read straddling the end leaves the buffer alone.
	buf := []byte("keep")
	if err := m.ReadAt(buf, size-2); !errors.Is(err, ErrOutOfRange) || string(buf) != "keep" {
		t.Errorf("straddling ReadAt: %q, %v", buf, err)
	}
	if err := m.ReadAt(nil, size); err != nil {
		t.Errorf("empty ReadAt at the end: %v", err)
	}
	if err := m.WriteAt(nil, math.MaxUint64); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("empty WriteAt past the end: %v", err)
	}
	if err := m.WriteAt([]byte{1}, math.MaxUint64); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("WriteAt at 2^64-1: %v", err)
	}
}

func TestCheckPFN(t *testing.T) {
	m := newMem(t, 4)
	for _, c := range []struct {
		pfn uint64
		ok  bool
	}{
		{0, true}, {3, true}, {4, false}, {5, false},
		{1 << 52, false}, // pfn*PageSize would wrap to 0
		{1<<52 + 1, false},
		{math.MaxUint64, false},
	} {
		err := m.CheckPFN(c.pfn)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrOutOfRange)) {
			t.Errorf("CheckPFN(%#x) = %v", c.pfn, err)
		}
	}
}

func TestPageRuns(t *testing.T) {
	const max = math.MaxUint64
	for _, c := range []struct {
		pfns []uint64
		want []pageRun
	}{
		{[]uint64{0}, []pageRun{{0, 0, 1}}},
		{[]uint64{7, 3, 4, 5, 0}, []pageRun{{0, 7, 1}, {1, 3, 3}, {4, 0, 1}}},
		{[]uint64{1, 2, 3, 4}, []pageRun{{0, 1, 4}}},
		{[]uint64{3, 2, 1}, []pageRun{{0, 3, 1}, {1, 2, 1}, {2, 1, 1}}},
		{[]uint64{5, 5}, []pageRun{{0, 5, 1}, {1, 5, 1}}},
		{[]uint64{max - 1, max, 0, 1}, []pageRun{{0, max - 1, 2}, {2, 0, 2}}}, // no wrap-around run
	} {
		if got := pageRuns(c.pfns); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("pageRuns(%v) = %v, want %v", c.pfns, got, c.want)
		}
	}
	// Random lists: the runs tile the list, each is consecutive, and no two
	// neighbours could have been one.
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		pfns := make([]uint64, 1+r.IntN(40))
		for i := range pfns {
			if i > 0 && r.IntN(2) == 0 {
				pfns[i] = pfns[i-1] + 1
			} else {
				pfns[i] = r.Uint64N(16)
			}
		}
		runs := pageRuns(pfns)
		next := 0
		for k, run := range runs {
			if run.index != next || run.pages < 1 {
				t.Fatalf("pageRuns(%v): run %d = %+v", pfns, k, run)
			}
			for j := range run.pages {
				if pfns[run.index+j] != run.pfn+uint64(j) {
					t.Fatalf("pageRuns(%v): run %+v is not consecutive", pfns, run)
				}
			}
			next += run.pages
			if next < len(pfns) && pfns[next] == pfns[next-1]+1 {
				t.Fatalf("pageRuns(%v): run %+v stops early", pfns, run)
			}
		}
		if next != len(pfns) {
			t.Fatalf("pageRuns(%v) covers %d pages", pfns, next)
		}
	}
}

func TestWindowScattered(t *testing.T) {
	m := newMem(t, 8)
	fill(m.Bytes(), 1)
	pfns := []uint64{7, 3, 4, 5, 0}
	w, err := m.MapPages(pfns)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b := w.Bytes()
	if len(b) != len(pfns)*PageSize {
		t.Fatalf("window of %d bytes, want %d", len(b), len(pfns)*PageSize)
	}
	// Reads: window page i is guest page pfns[i].
	for i, pfn := range pfns {
		if !bytes.Equal(pageOf(b, uint64(i)), pageOf(m.Bytes(), pfn)) {
			t.Errorf("window page %d differs from guest page %d", i, pfn)
		}
	}
	// Writes through the window land in those guest pages and no others.
	fill(b, 2) // window page i gets page(2, i)
	for i, pfn := range pfns {
		if !bytes.Equal(pageOf(m.Bytes(), pfn), page(2, uint64(i))) {
			t.Errorf("guest page %d does not hold what window page %d wrote", pfn, i)
		}
	}
	for _, pfn := range []uint64{1, 2, 6} {
		if !bytes.Equal(pageOf(m.Bytes(), pfn), page(1, pfn)) {
			t.Errorf("guest page %d, outside the window, changed", pfn)
		}
	}
	// Coherence: changes made through the memory show in the window at once.
	fill(m.Bytes(), 3)
	if err := m.WriteAt([]byte("via WriteAt"), 4*PageSize+100); err != nil {
		t.Fatal(err)
	}
	for i, pfn := range pfns {
		if !bytes.Equal(pageOf(b, uint64(i)), pageOf(m.Bytes(), pfn)) {
			t.Errorf("after memory writes, window page %d differs from guest page %d", i, pfn)
		}
	}
	if got := string(b[2*PageSize+100:][:11]); got != "via WriteAt" { // pfn 4 is window page 2
		t.Errorf("window sees %q", got)
	}
}

func TestWindowAliases(t *testing.T) {
	m := newMem(t, 4)
	w, err := m.MapPages([]uint64{2, 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Bytes()[10] = 77
	if w.Bytes()[PageSize+10] != 77 || m.Bytes()[2*PageSize+10] != 77 {
		t.Error("a page listed twice does not alias itself")
	}
}

func TestMapPagesRefuses(t *testing.T) {
	m := newMem(t, 8)
	before := mappedRuns.Load()
	for _, c := range []struct {
		name string
		pfns []uint64
		want error
	}{
		{"nil", nil, ErrInvalidSize},
		{"empty", []uint64{}, ErrInvalidSize},
		{"too many", make([]uint64, MaxWindowPages+1), ErrInvalidSize},
		{"past the end", []uint64{1, 8}, ErrOutOfRange},
		{"wrapping offset", []uint64{0, 1 << 52}, ErrOutOfRange},
		{"2^64-1", []uint64{math.MaxUint64}, ErrOutOfRange},
	} {
		if w, err := m.MapPages(c.pfns); !errors.Is(err, c.want) || w != nil {
			t.Errorf("%s: MapPages = %v, %v; want %v", c.name, w, err, c.want)
		}
	}
	if got := mappedRuns.Load(); got != before {
		t.Errorf("refused windows left %d runs counted", got-before)
	}
}

func TestMapPagesRunBudget(t *testing.T) {
	m := newMem(t, 8)
	base := mappedRuns.Load()
	defer func(old int64) { runsLimit = old }(runsLimit)
	runsLimit = base + 4

	w1, err := m.MapPages([]uint64{0, 2, 4}) // 3 runs
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.MapPages([]uint64{1, 3}); !errors.Is(err, ErrTooManyMappings) {
		t.Errorf("over budget: %v", err)
	}
	w2, err := m.MapPages([]uint64{5, 6, 7}) // 1 run: fits
	if err != nil {
		t.Fatal(err)
	}
	if got := mappedRuns.Load() - base; got != 4 {
		t.Errorf("%d runs counted, want 4", got)
	}
	w1.Close()
	w1.Close() // counted off once only
	w3, err := m.MapPages([]uint64{1, 3, 5})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	w2.Close()
	w3.Close()
	if got := mappedRuns.Load(); got != base {
		t.Errorf("%d runs still counted after closing every window", got-base)
	}
}

func TestWindowOutlivesMemory(t *testing.T) {
	m, err := New(t.Name(), 4*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	fill(m.Bytes(), 4)
	w, err := m.MapPages([]uint64{3, 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	b := w.Bytes()
	if !bytes.Equal(pageOf(b, 0), page(4, 3)) || !bytes.Equal(pageOf(b, 1), page(4, 1)) {
		t.Error("window lost guest memory when the Memory closed")
	}
	b[0] = 99 // still mapped read/write
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if w.Bytes() != nil {
		t.Error("Bytes after Close is not nil")
	}
}

func TestClose(t *testing.T) {
	m, err := New(t.Name(), 2*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	f := m.File()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !isClosed(f) {
		t.Error("Close left the memfd open")
	}
	if m.Bytes() != nil {
		t.Error("Bytes after Close is not nil")
	}
	if _, err := m.Slice(0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Slice after Close: %v", err)
	}
	if err := m.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v", err)
	}
	if err := m.WriteAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Close: %v", err)
	}
	if err := m.CheckPFN(0); !errors.Is(err, ErrClosed) {
		t.Errorf("CheckPFN after Close: %v", err)
	}
	if _, err := m.MapPages([]uint64{0}); !errors.Is(err, ErrClosed) {
		t.Errorf("MapPages after Close: %v", err)
	}
}

func TestOpenSharesMemory(t *testing.T) {
	m := newMem(t, 4)
	m2, err := Open(dupFile(t, m.File()), 4*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	m.Bytes()[5000] = 42
	if m2.Bytes()[5000] != 42 {
		t.Error("second mapping does not see a write through the first")
	}
	if err := m2.WriteAt([]byte("back"), 3*PageSize); err != nil {
		t.Fatal(err)
	}
	if string(m.Bytes()[3*PageSize:][:4]) != "back" {
		t.Error("first mapping does not see a write through the second")
	}
	w, err := m2.MapPages([]uint64{3, 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m.Bytes()[PageSize+1] = 7
	if string(w.Bytes()[:4]) != "back" || w.Bytes()[PageSize+1] != 7 {
		t.Error("window of the second mapping does not see the first's writes")
	}
	// A prefix of the file is fine: the worker may map less than exists.
	m3, err := Open(dupFile(t, m.File()), PageSize)
	if err != nil {
		t.Fatal(err)
	}
	m3.Close()
}

func TestOpenRefuses(t *testing.T) {
	m := newMem(t, 2)

	unsealed := func() *os.File {
		fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "unsealed")
		if err := f.Truncate(2 * PageSize); err != nil {
			t.Fatal(err)
		}
		return f
	}
	regular := func() *os.File {
		f, err := os.Create(filepath.Join(t.TempDir(), "regular"))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(2 * PageSize); err != nil {
			t.Fatal(err)
		}
		return f
	}
	closed := func() *os.File {
		f := dupFile(t, m.File())
		f.Close()
		return f
	}
	for _, c := range []struct {
		name string
		f    *os.File
		size uint64
		want error
	}{
		{"larger than the file", dupFile(t, m.File()), 3 * PageSize, ErrOutOfRange},
		{"zero size", dupFile(t, m.File()), 0, ErrInvalidSize},
		{"unaligned size", dupFile(t, m.File()), PageSize + 8, ErrUnaligned},
		{"unsealed memfd", unsealed(), 2 * PageSize, ErrNotSealed},
		{"regular file", regular(), 2 * PageSize, ErrNotSealed},
		{"closed file", closed(), 2 * PageSize, ErrClosed},
	} {
		got, err := Open(c.f, c.size)
		if !errors.Is(err, c.want) || got != nil {
			t.Errorf("%s: Open = %v, %v; want %v", c.name, got, err, c.want)
		}
		if !isClosed(c.f) {
			t.Errorf("%s: Open failed but left the file open", c.name)
			c.f.Close()
		}
	}
	if _, err := Open(nil, PageSize); err == nil {
		t.Error("Open(nil) succeeded")
	}
}

// childEnv switches the test binary into TestCrossProcess's child role.
const childEnv = "PARTITA_MEMORY_TEST_CHILD"

const (
	xprocPages = 6
	parentSeed = 5
	childSeed  = 6
)

// TestCrossProcess hands the memfd to a re-executed test binary as fd 3.
// The child maps it with Open, checks what the parent wrote, and writes
// pages of its own through WriteAt and through a scattered window; the
// parent then sees them in its own mapping.
func TestCrossProcess(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		if err := crossProcessChild(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	m := newMem(t, xprocPages)
	fill(m.Bytes(), parentSeed)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrossProcess$", "-test.count=1")
	// Under -race the child would otherwise sleep a second on exit.
	cmd.Env = append(os.Environ(), childEnv+"=1", "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.ExtraFiles = []*os.File{m.File()} // fd 3 in the child
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for pfn := uint64(0); pfn < xprocPages; pfn++ {
		want := page(parentSeed, pfn)
		if pfn >= 2 {
			want = page(childSeed, pfn)
		}
		if !bytes.Equal(pageOf(m.Bytes(), pfn), want) {
			t.Errorf("page %d: parent does not see what the child left", pfn)
		}
	}
}

func crossProcessChild() error {
	m, err := Open(os.NewFile(3, "guest-memory"), xprocPages*PageSize)
	if err != nil {
		return err
	}
	defer m.Close()
	for pfn := uint64(0); pfn < xprocPages; pfn++ {
		if !bytes.Equal(pageOf(m.Bytes(), pfn), page(parentSeed, pfn)) {
			return fmt.Errorf("page %d does not hold what the parent wrote", pfn)
		}
	}
	if err := m.WriteAt(page(childSeed, 2), 2*PageSize); err != nil {
		return err
	}
	w, err := m.MapPages([]uint64{5, 3, 4})
	if err != nil {
		return err
	}
	defer w.Close()
	copy(pageOf(w.Bytes(), 0), page(childSeed, 5))
	copy(pageOf(w.Bytes(), 1), page(childSeed, 3))
	copy(pageOf(w.Bytes(), 2), page(childSeed, 4))
	return nil
}

// TestConcurrentAccess runs the accessors from several goroutines at once
// (meant for -race): each owns a slice of guest memory and checks that its
// own writes, direct and through windows, stay put.
func TestConcurrentAccess(t *testing.T) {
	const workers, pagesEach = 8, 4
	m := newMem(t, workers*pagesEach)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := range workers {
		wg.Go(func() {
			first := uint64(g * pagesEach)
			buf := make([]byte, PageSize)
			for iter := range 50 {
				seed := byte(iter)
				for p := first; p < first+pagesEach; p++ {
					if err := m.WriteAt(page(seed, p), p*PageSize); err != nil {
						errs <- err
						return
					}
				}
				w, err := m.MapPages([]uint64{first + 3, first + 1, first + 2, first})
				if err != nil {
					errs <- err
					return
				}
				for i, p := range []uint64{first + 3, first + 1, first + 2, first} {
					if !bytes.Equal(pageOf(w.Bytes(), uint64(i)), page(seed, p)) {
						errs <- fmt.Errorf("worker %d: window page %d", g, i)
					}
				}
				w.Close()
				if err := m.ReadAt(buf, first*PageSize); err != nil || !bytes.Equal(buf, page(seed, first)) {
					errs <- fmt.Errorf("worker %d: ReadAt: %v", g, err)
					return
				}
				if _, err := m.Slice(m.Size()-1, 2); !errors.Is(err, ErrOutOfRange) {
					errs <- fmt.Errorf("worker %d: hostile Slice: %v", g, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewPageAllocator(t *testing.T) {
	for _, c := range []struct {
		base, limit uint64
		want        error
	}{
		{1, PageSize, ErrUnaligned},
		{0, PageSize + 1, ErrUnaligned},
		{PageSize, PageSize, ErrInvalidSize},
		{2 * PageSize, PageSize, ErrInvalidSize},
	} {
		if _, err := NewPageAllocator(c.base, c.limit); !errors.Is(err, c.want) {
			t.Errorf("NewPageAllocator(%#x, %#x) = %v, want %v", c.base, c.limit, err, c.want)
		}
	}
}

func TestPageAllocator(t *testing.T) {
	a, err := NewPageAllocator(PageSize, 9*PageSize) // pages 1..8
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1, math.MinInt} {
		if _, err := a.Alloc(n); !errors.Is(err, ErrInvalidSize) {
			t.Errorf("Alloc(%d): %v", n, err)
		}
	}
	if _, err := a.Alloc(9); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Alloc(9) of 8: %v", err)
	}
	if _, err := a.Alloc(math.MaxInt); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Alloc(MaxInt): %v", err)
	}
	x, err1 := a.Alloc(3)
	y, err2 := a.Alloc(5)
	if err1 != nil || err2 != nil || x != PageSize || y != 4*PageSize {
		t.Fatalf("allocations at %#x (%v), %#x (%v)", x, err1, y, err2)
	}
	if _, err := a.Alloc(1); !errors.Is(err, ErrNoSpace) {
		t.Errorf("exhausted: %v", err)
	}

	for _, c := range []struct {
		name  string
		gpa   uint64
		pages int
		want  error
	}{
		{"part of an allocation", x + PageSize, 1, ErrNotAllocated},
		{"short", x, 2, ErrNotAllocated},
		{"long", x, 4, ErrNotAllocated},
		{"two allocations at once", x, 8, ErrNotAllocated},
		{"overflowing length", x, 1 << 52, ErrNotAllocated},
		{"below the range", 0, 1, ErrNotAllocated},
		{"above the range", 20 * PageSize, 1, ErrNotAllocated},
		{"unaligned", x + 1, 3, ErrUnaligned},
		{"zero pages", x, 0, ErrInvalidSize},
		{"negative pages", x, -3, ErrInvalidSize},
	} {
		if err := a.Free(c.gpa, c.pages); !errors.Is(err, c.want) {
			t.Errorf("%s: Free(%#x, %d) = %v, want %v", c.name, c.gpa, c.pages, err, c.want)
		}
	}
	checkAllocator(t, a, 0) // refused frees changed nothing

	if err := a.Free(x, 3); err != nil {
		t.Fatal(err)
	}
	if err := a.Free(x, 3); !errors.Is(err, ErrNotAllocated) {
		t.Errorf("double free: %v", err)
	}
	// First fit: a 2-page request goes into the hole at the bottom.
	z, err := a.Alloc(2)
	if err != nil || z != x {
		t.Errorf("Alloc(2) = %#x, %v; want %#x", z, err, x)
	}
	if err := a.Free(y, 5); err != nil {
		t.Fatal(err)
	}
	if err := a.Free(z, 2); err != nil {
		t.Fatal(err)
	}
	checkAllocator(t, a, 8)
	if all, err := a.Alloc(8); err != nil || all != PageSize {
		t.Errorf("after freeing everything, Alloc(8) = %#x, %v", all, err)
	}
}

// checkAllocator checks the allocator's invariants and, if free >= 0,
// that free pages are free.
func checkAllocator(t *testing.T, a *PageAllocator, free int) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	var nfree, nused uint64
	for i, s := range a.free {
		if s.pages == 0 || s.start < a.base || s.end() > a.limit || s.start%PageSize != 0 {
			t.Fatalf("free span %d %+v is bad (range %#x..%#x)", i, s, a.base, a.limit)
		}
		if i > 0 && a.free[i-1].end() >= s.start {
			t.Fatalf("free spans %d and %d overlap, touch or are out of order: %+v", i-1, i, a.free)
		}
		nfree += s.pages
	}
	for gpa, n := range a.used {
		nused += uint64(n)
		for _, s := range a.free {
			if gpa < s.end() && s.start < gpa+uint64(n)*PageSize {
				t.Fatalf("allocation %#x+%d overlaps free span %+v", gpa, n, s)
			}
		}
	}
	if total := (a.limit - a.base) / PageSize; nfree+nused != total {
		t.Fatalf("%d free + %d used pages, want %d", nfree, nused, total)
	}
	if free >= 0 && nfree != uint64(free) {
		t.Fatalf("%d free pages, want %d", nfree, free)
	}
}

// TestPageAllocatorModel runs random allocations and frees, good and bad,
// against a page map, checking first fit and the invariants at every step.
func TestPageAllocatorModel(t *testing.T) {
	const pages = 64
	const base = 16 * PageSize
	a, err := NewPageAllocator(base, base+pages*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	var owned [pages]bool
	type alloc struct {
		gpa uint64
		n   int
	}
	var live []alloc
	firstFit := func(n int) int {
		for i := 0; i+n <= pages; i++ {
			ok := true
			for j := i; j < i+n; j++ {
				ok = ok && !owned[j]
			}
			if ok {
				return i
			}
		}
		return -1
	}
	r := rand.New(rand.NewPCG(3, 4))
	for step := range 20000 {
		switch op := r.IntN(10); {
		case op < 5: // alloc
			n := 1 + r.IntN(12)
			want := firstFit(n)
			gpa, err := a.Alloc(n)
			if want < 0 {
				if !errors.Is(err, ErrNoSpace) {
					t.Fatalf("step %d: Alloc(%d) = %#x, %v; want ErrNoSpace", step, n, gpa, err)
				}
				break
			}
			if err != nil || gpa != base+uint64(want)*PageSize {
				t.Fatalf("step %d: Alloc(%d) = %#x, %v; want %#x", step, n, gpa, err, base+uint64(want)*PageSize)
			}
			for j := want; j < want+n; j++ {
				owned[j] = true
			}
			live = append(live, alloc{gpa, n})
		case op < 8: // good free
			if len(live) == 0 {
				break
			}
			k := r.IntN(len(live))
			l := live[k]
			if err := a.Free(l.gpa, l.n); err != nil {
				t.Fatalf("step %d: Free(%#x, %d): %v", step, l.gpa, l.n, err)
			}
			first := int((l.gpa - base) / PageSize)
			for j := first; j < first+l.n; j++ {
				owned[j] = false
			}
			live = append(live[:k], live[k+1:]...)
		default: // a free that matches no live allocation must fail
			gpa := base + uint64(r.IntN(pages+4))*PageSize - 2*PageSize
			n := 1 + r.IntN(12)
			match := false
			for _, l := range live {
				match = match || (l.gpa == gpa && l.n == n)
			}
			if match {
				break
			}
			if err := a.Free(gpa, n); !errors.Is(err, ErrNotAllocated) {
				t.Fatalf("step %d: stray Free(%#x, %d) = %v", step, gpa, n, err)
			}
		}
		nfree := 0
		for _, o := range owned {
			if !o {
				nfree++
			}
		}
		checkAllocator(t, a, nfree)
	}
}

// TestPageAllocatorConcurrent allocates and frees from several goroutines
// (meant for -race) and checks that no page is ever handed out twice.
func TestPageAllocatorConcurrent(t *testing.T) {
	const pages = 128
	a, err := NewPageAllocator(0, pages*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	var owner [pages]atomic.Int32 // 0 free, else worker+1
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			id := int32(g + 1)
			for range 2000 {
				n := 1 + r.IntN(8)
				gpa, err := a.Alloc(n)
				if err != nil {
					continue // exhausted for the moment
				}
				first := gpa / PageSize
				for p := first; p < first+uint64(n); p++ {
					if !owner[p].CompareAndSwap(0, id) {
						bad.Add(1)
					}
				}
				for p := first; p < first+uint64(n); p++ {
					owner[p].CompareAndSwap(id, 0)
				}
				if err := a.Free(gpa, n); err != nil {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d pages handed out twice or frees refused", bad.Load())
	}
	checkAllocator(t, a, pages)
}

// FuzzSlice throws guest physical ranges at a small memory: Slice must
// never panic, and either return exactly the named bytes or ErrOutOfRange.
func FuzzSlice(f *testing.F) {
	const size = 4 * PageSize
	m, err := New("fuzz", size)
	if err != nil {
		f.Fatal(err)
	}
	defer m.Close()
	f.Add(uint64(0), uint64(size))
	f.Add(uint64(size), uint64(0))
	f.Add(uint64(size-1), uint64(2))
	f.Add(uint64(math.MaxUint64), uint64(1))
	f.Fuzz(func(t *testing.T, gpa, n uint64) {
		inside := gpa <= size && n <= size-gpa
		b, err := m.Slice(gpa, n)
		if err != nil {
			if !errors.Is(err, ErrOutOfRange) || inside {
				t.Fatalf("Slice(%#x, %#x): %v", gpa, n, err)
			}
			if err := m.ReadAt(make([]byte, min(n, 64)), gpa); n <= 64 && !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("ReadAt(%#x, %d bytes) = %v after Slice refused", gpa, n, err)
			}
			return
		}
		if !inside || uint64(len(b)) != n || uint64(cap(b)) != n {
			t.Fatalf("Slice(%#x, %#x) = len %d cap %d", gpa, n, len(b), cap(b))
		}
		if n > 0 {
			// The slice is the guest memory at gpa, nowhere else.
			old0, oldN := b[0], b[n-1]
			b[0], b[n-1] = old0+1, oldN+2
			mem := m.Bytes()
			if mem[gpa] != b[0] || mem[gpa+n-1] != b[n-1] {
				t.Fatalf("Slice(%#x, %#x) does not alias guest memory at gpa", gpa, n)
			}
		}
	})
}

// FuzzMapPages builds page lists, mostly in range, from the fuzzer's bytes:
// MapPages must never panic, must refuse every list with a page outside
// memory, and must otherwise map exactly the listed pages.
func FuzzMapPages(f *testing.F) {
	const pages = 8
	m, err := New("fuzz", pages*PageSize)
	if err != nil {
		f.Fatal(err)
	}
	defer m.Close()
	fill(m.Bytes(), 7)
	f.Add([]byte{7, 3, 4, 5, 0})
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 9})
	f.Add([]byte{0xff})
	f.Add([]byte{2, 2, 0xfe})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64 {
			data = data[:64]
		}
		pfns := make([]uint64, len(data))
		inside := true
		for i, d := range data {
			switch d {
			case 0xff:
				pfns[i] = math.MaxUint64
			case 0xfe:
				pfns[i] = 1 << 52 // pfn*PageSize wraps to 0
			default:
				pfns[i] = uint64(d % (pages + 2))
			}
			inside = inside && pfns[i] < pages
		}
		before := mappedRuns.Load()
		w, err := m.MapPages(pfns)
		switch {
		case len(pfns) == 0:
			if !errors.Is(err, ErrInvalidSize) {
				t.Fatalf("MapPages(%v) = %v", pfns, err)
			}
			return
		case !inside:
			if !errors.Is(err, ErrOutOfRange) || w != nil {
				t.Fatalf("MapPages(%v) = %v", pfns, err)
			}
			if mappedRuns.Load() != before {
				t.Fatal("refused window left runs counted")
			}
			return
		case err != nil:
			t.Fatalf("MapPages(%v): %v", pfns, err)
		}
		defer w.Close()
		if len(w.Bytes()) != len(pfns)*PageSize {
			t.Fatalf("MapPages(%v): window of %d bytes", pfns, len(w.Bytes()))
		}
		for i, pfn := range pfns {
			if !bytes.Equal(pageOf(w.Bytes(), uint64(i)), page(7, pfn)) {
				t.Fatalf("MapPages(%v): window page %d is not guest page %d", pfns, i, pfn)
			}
		}
	})
}

func BenchmarkMapPages(b *testing.B) {
	m := newMem(b, 256)
	scattered := make([]uint64, 32)
	contiguous := make([]uint64, 32)
	for i := range scattered {
		scattered[i] = uint64(i*37) % 256 // 32 runs of one page
		contiguous[i] = uint64(100 + i)   // one run
	}
	for _, c := range []struct {
		name string
		pfns []uint64
	}{{"scattered-32", scattered}, {"contiguous-32", contiguous}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				w, err := m.MapPages(c.pfns)
				if err != nil {
					b.Fatal(err)
				}
				w.Close()
			}
		})
	}
}

func BenchmarkSlice(b *testing.B) {
	m := newMem(b, 16)
	var sink []byte
	for b.Loop() {
		s, err := m.Slice(3*PageSize+17, 256)
		if err != nil {
			b.Fatal(err)
		}
		sink = s
	}
	_ = sink
}
