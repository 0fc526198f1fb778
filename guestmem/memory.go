// Package guestmem owns a partition's guest physical memory: one memfd,
// created by the root and mapped by every process that needs it (the
// worker, for KVM memory slots; the root, so device providers reach ring
// buffers and data pages directly), bounds-checked access by guest
// physical address, and contiguous windows onto scattered guest pages.
//
// Every guest physical address (GPA) or page frame number (PFN) a guest
// hands over is hostile. The accessors here check it against the memory's
// size, without arithmetic overflow, before any byte is touched, and return
// an error wrapping ErrOutOfRange rather than panic.
//
// # Sharing
//
// New creates the memfd close-on-exec (and MFD_NOEXEC_SEAL where the kernel
// knows the flag), sizes it and seals it against shrinking, growing and
// further sealing (F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL). File hands the memfd to another process (over SCM_RIGHTS or
// exec.Cmd.ExtraFiles), which maps it with Open. Open insists on the shrink
// seal: a file another process could truncate would turn guest accesses in
// this process into SIGBUS.
//
// # Concurrency
//
// A Memory is safe for concurrent use: its mapping never changes between
// New/Open and Close, so Slice, ReadAt, WriteAt, CheckPFN and MapPages may
// run from any number of goroutines. The bytes themselves are shared with
// the guest and with other processes and can change at any moment; code
// that parses them copies first. Close must not run while other goroutines
// still use the Memory or slices obtained from it; once it has run, the
// accessors return ErrClosed.
//
// A Window is independent of the Memory it came from: it holds its own
// mapping of the memfd and stays valid after Memory.Close, until its own
// Close. The package keeps a process-wide budget of the kernel mappings
// that Windows hold (see MaxMappedRuns), so a guest handing over scattered
// pages cannot exhaust this process's mappings.
//
// PageAllocator is the guest side's placement of rings and buffers; it
// has its own lock and is unrelated to the Memory's state.
package guestmem

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// PageSize is the guest page size in bytes.
const PageSize = 4096

// Errors, always wrapped with the offending values.
var (
	// ErrOutOfRange: a guest physical range or page lies outside guest
	// memory (or a file is smaller than the memory it should hold).
	ErrOutOfRange = errors.New("memory: guest physical range outside guest memory")
	// ErrUnaligned: a size or address is not a multiple of PageSize.
	ErrUnaligned = errors.New("memory: not page aligned")
	// ErrInvalidSize: a size or count is zero, negative or too large.
	ErrInvalidSize = errors.New("memory: invalid size")
	// ErrClosed: the Memory has been closed.
	ErrClosed = errors.New("memory: closed")
	// ErrNotSealed: Open was handed a file that can still shrink.
	ErrNotSealed = errors.New("memory: file not sealed against shrinking")
)

// seals are the seals New applies. F_SEAL_SEAL keeps a less trusted holder
// of the memfd (the worker) from adding F_SEAL_FUTURE_WRITE, which would
// make later writable mappings fail.
const seals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// maxNameLen is the longest memfd name the kernel takes (NAME_MAX less the
// "memfd:" prefix).
const maxNameLen = 249

// Memory is a partition's guest physical memory, mapped in this process.
type Memory struct {
	f    *os.File // the memfd; closed by Close
	size uint64   // immutable
	mem  []byte   // MAP_SHARED mapping of [0, size); immutable, unmapped by Close

	closed    atomic.Bool // set first thing in Close; accessors check it
	closeOnce sync.Once
	closeErr  error // written once, inside closeOnce
}

// New creates the guest memory of a partition: an anonymous memfd named
// "partita:"+name (visible in /proc/PID/fd, for debugging; truncated to the
// kernel's limit), close-on-exec, sized to size bytes (a positive multiple
// of PageSize), sealed, and mapped shared read/write. The pages read as
// zero until written.
func New(name string, size uint64) (*Memory, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	name = "partita:" + name
	if len(name) > maxNameLen {
		name = name[:maxNameLen]
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_NOEXEC_SEAL)
	if errors.Is(err, unix.EINVAL) {
		// Kernels before 6.3 do not know MFD_NOEXEC_SEAL. Guest memory is
		// never executed through the file, so the seal is only hygiene.
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("memory: memfd_create %q: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("memory: size guest memory to %#x: %w", size, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("memory: seal guest memory: %w", err)
	}
	return mapFile(f, size)
}

// Open maps guest memory that New created, usually in another process that
// handed it over (over SCM_RIGHTS, or as an inherited descriptor). size
// is the partition's memory size, a positive multiple of PageSize.
//
// Open takes ownership of f whatever the outcome: on success the Memory's
// Close closes it, on error Open has closed it already. Callers that want
// to keep their own descriptor pass a dup.
//
// The file must be sealed against shrinking (New does that) and hold at
// least size bytes.
func Open(f *os.File, size uint64) (*Memory, error) {
	if f == nil {
		return nil, errors.New("memory: Open of a nil file")
	}
	if err := checkSize(size); err != nil {
		f.Close()
		return nil, err
	}
	err := withFD(f, func(fd int) error {
		got, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
		if err != nil {
			// EINVAL: not a memfd or shmem file, so it cannot be sealed.
			return fmt.Errorf("%w: %s: F_GET_SEALS: %w", ErrNotSealed, f.Name(), err)
		}
		if got&unix.F_SEAL_SHRINK == 0 {
			return fmt.Errorf("%w: %s: seals %#x", ErrNotSealed, f.Name(), got)
		}
		// The shrink seal makes this check stick: the file cannot get
		// smaller than what Fstat reports now.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("memory: stat %s: %w", f.Name(), err)
		}
		if st.Size < 0 || uint64(st.Size) < size {
			return fmt.Errorf("%w: %s holds %#x bytes, memory size %#x", ErrOutOfRange, f.Name(), st.Size, size)
		}
		return nil
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	return mapFile(f, size)
}

// checkSize accepts positive multiples of PageSize that fit an int64 (the
// type ftruncate and mmap lengths take).
func checkSize(size uint64) error {
	switch {
	case size == 0 || size > math.MaxInt64:
		return fmt.Errorf("%w: memory size %#x", ErrInvalidSize, size)
	case size%PageSize != 0:
		return fmt.Errorf("%w: memory size %#x", ErrUnaligned, size)
	}
	return nil
}

// withFD runs fn with f's descriptor, which stays open (and keeps its
// number) until fn returns, even if another goroutine closes f meanwhile.
// It fails if f is already closed.
func withFD(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("memory: %s: %w", f.Name(), err)
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) { fnErr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrClosed, f.Name(), err)
	}
	return fnErr
}

// mapFile maps [0, size) of f shared read/write; it closes f on error.
func mapFile(f *os.File, size uint64) (*Memory, error) {
	var b []byte
	err := withFD(f, func(fd int) error {
		var err error
		b, err = mapShared(fd, size)
		return err
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("memory: map %#x bytes of %s: %w", size, f.Name(), err)
	}
	return &Memory{f: f, size: size, mem: b}, nil
}

// File is the memfd, to pass to another process. The Memory keeps
// ownership: Close closes it, and a receiver in this process that wants
// its own Memory should Open a dup.
func (m *Memory) File() *os.File { return m.f }

// Size is the size of guest memory in bytes.
func (m *Memory) Size() uint64 { return m.size }

// Pages is the number of guest pages: valid PFNs are 0..Pages()-1.
func (m *Memory) Pages() uint64 { return m.size / PageSize }

// Bytes is the whole mapping, for the partition's owner (the worker hands
// it to KVM as a memory slot). Device code uses the checked accessors.
// After Close it is nil.
func (m *Memory) Bytes() []byte {
	if m.closed.Load() {
		return nil
	}
	return m.mem
}

// check validates [gpa, gpa+length) against the memory, without overflow.
func (m *Memory) check(gpa, length uint64) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if gpa > m.size || length > m.size-gpa {
		return fmt.Errorf("%w: gpa %#x length %#x, memory size %#x", ErrOutOfRange, gpa, length, m.size)
	}
	return nil
}

// Slice returns the guest bytes [gpa, gpa+length), aliasing guest memory
// (capacity is length, so appends cannot run into the next bytes). A zero
// length is allowed anywhere up to and including the end of memory.
func (m *Memory) Slice(gpa, length uint64) ([]byte, error) {
	if err := m.check(gpa, length); err != nil {
		return nil, err
	}
	return m.mem[gpa : gpa+length : gpa+length], nil
}

// ReadAt copies len(p) guest bytes at gpa into p. If the range is out of
// bounds it copies nothing.
func (m *Memory) ReadAt(p []byte, gpa uint64) error {
	b, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

// WriteAt copies p into guest memory at gpa. If the range is out of bounds
// it copies nothing.
func (m *Memory) WriteAt(p []byte, gpa uint64) error {
	b, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(b, p)
	return nil
}

// CheckPFN checks that guest page pfn lies inside guest memory. Once it
// has passed, pfn*PageSize cannot overflow.
func (m *Memory) CheckPFN(pfn uint64) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if pfn >= m.size/PageSize {
		return fmt.Errorf("%w: pfn %#x, memory has %#x pages", ErrOutOfRange, pfn, m.size/PageSize)
	}
	return nil
}

// Close unmaps guest memory and closes the memfd. It is idempotent: later
// calls return the first call's result. Windows made by MapPages stay
// valid; slices from Bytes and Slice do not.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		m.closeErr = errors.Join(unmapShared(m.mem), m.f.Close())
	})
	return m.closeErr
}
