// Package memory owns a partition's guest physical memory: one memfd,
// created by the root and mapped by every process that needs it (the
// worker, for KVM memory slots; the root, so device providers reach ring
// buffers and data pages directly), bounds-checked access by guest
// physical address, and contiguous windows onto scattered guest pages.
//
// Every guest physical address or page number a guest hands over is hostile;
// the accessors here check it against the memory's size, without overflow,
// before any byte is touched.
//
// A Memory is safe for concurrent use: its mapping never changes between
// New/Open and Close. The bytes themselves are shared with the guest and
// other processes; callers that parse them copy first.
package memory

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// PageSize is the guest page size.
const PageSize = 4096

// MaxWindowPages bounds one MapPages call (1 GiB).
const MaxWindowPages = 1 << 18

// Errors, wrapped with the offending values.
var (
	ErrOutOfRange = errors.New("memory: guest physical range outside guest memory")
	ErrUnaligned  = errors.New("memory: not page aligned")
	ErrClosed     = errors.New("memory: closed")
)

// Memory is a partition's guest physical memory, mapped in this process.
type Memory struct {
	f    *os.File
	size uint64
	mem  []byte // MAP_SHARED mapping of the whole file

	closeOnce sync.Once
	closeErr  error
}

// New creates the guest memory of a partition: an anonymous memfd named
// "partita:"+name, sized to size bytes (a positive multiple of PageSize),
// and maps it.
func New(name string, size uint64) (*Memory, error) {
	if size == 0 || size%PageSize != 0 {
		return nil, fmt.Errorf("%w: size %#x", ErrUnaligned, size)
	}
	fd, err := unix.MemfdCreate("partita:"+name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "partita:"+name)
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("size guest memory: %w", err)
	}
	return mapFile(f, size)
}

// Open maps guest memory received from another process (for example over
// SCM_RIGHTS). It takes ownership of f: Close closes it.
func Open(f *os.File, size uint64) (*Memory, error) {
	if size == 0 || size%PageSize != 0 {
		return nil, fmt.Errorf("%w: size %#x", ErrUnaligned, size)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat guest memory: %w", err)
	}
	if uint64(fi.Size()) < size {
		return nil, fmt.Errorf("%w: file holds %d bytes, want %d", ErrOutOfRange, fi.Size(), size)
	}
	return mapFile(f, size)
}

func mapFile(f *os.File, size uint64) (*Memory, error) {
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mmap guest memory: %w", err)
	}
	return &Memory{f: f, size: size, mem: b}, nil
}

// File is the memfd, to pass to another process.
func (m *Memory) File() *os.File { return m.f }

// Size is the size of guest memory in bytes.
func (m *Memory) Size() uint64 { return m.size }

// Bytes is the whole mapping, for the partition's owner. Device code uses
// the checked accessors.
func (m *Memory) Bytes() []byte { return m.mem }

// check validates [gpa, gpa+length) without overflow.
func (m *Memory) check(gpa, length uint64) error {
	if gpa > m.size || length > m.size-gpa {
		return fmt.Errorf("%w: gpa %#x length %#x, memory %#x", ErrOutOfRange, gpa, length, m.size)
	}
	return nil
}

// Slice returns the guest bytes [gpa, gpa+length).
func (m *Memory) Slice(gpa, length uint64) ([]byte, error) {
	if err := m.check(gpa, length); err != nil {
		return nil, err
	}
	return m.mem[gpa : gpa+length : gpa+length], nil
}

// ReadAt copies guest bytes at gpa into p.
func (m *Memory) ReadAt(p []byte, gpa uint64) error {
	b, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

// WriteAt copies p into guest memory at gpa.
func (m *Memory) WriteAt(p []byte, gpa uint64) error {
	b, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(b, p)
	return nil
}

// CheckPFN checks that guest page pfn lies inside guest memory.
func (m *Memory) CheckPFN(pfn uint64) error {
	if pfn >= m.size/PageSize {
		return fmt.Errorf("%w: pfn %#x, memory has %#x pages", ErrOutOfRange, pfn, m.size/PageSize)
	}
	return nil
}

// MapPages maps the given guest pages, in order, at consecutive virtual
// addresses, so that a ring or buffer the guest scattered over physical
// memory reads as one slice. Writes through the window go straight to guest
// memory. The window holds its own mapping of the memfd and stays valid
// after the Memory is closed, until its own Close.
func (m *Memory) MapPages(pfns []uint64) (*Window, error) {
	if len(pfns) == 0 || len(pfns) > MaxWindowPages {
		return nil, fmt.Errorf("%w: window of %d pages (1..%d)", ErrOutOfRange, len(pfns), MaxWindowPages)
	}
	for _, p := range pfns {
		if err := m.CheckPFN(p); err != nil {
			return nil, err
		}
	}
	return mapWindow(int(m.f.Fd()), pfns)
}

// Close unmaps guest memory and closes the memfd. Idempotent.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		m.closeErr = errors.Join(unix.Munmap(m.mem), m.f.Close())
		m.mem = nil
	})
	return m.closeErr
}

// Window is a contiguous view of scattered guest pages.
type Window struct {
	b    []byte
	once sync.Once
	err  error
}

// Bytes is the window's memory: len(pfns) pages.
func (w *Window) Bytes() []byte { return w.b }

// Close unmaps the window. Idempotent.
func (w *Window) Close() error {
	w.once.Do(func() { w.err = unmapWindow(w.b); w.b = nil })
	return w.err
}
