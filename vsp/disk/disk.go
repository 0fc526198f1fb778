// Package disk owns virtual disk backends: the interface the emulated IDE
// controller (Generation 1) and the storage VSP (Generation 2) read and
// write through, and its implementations. Raw images are here; VHDX comes
// with the storage VSP.
//
// Offsets and lengths come from guests (an ATA LBA, a SCSI CDB) and are
// hostile: every access is checked against the disk's size and a read-only
// disk refuses writes, each with an error the device model turns into a
// guest-visible failure (an ATA error status, a SCSI check condition).
package disk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// SectorSize is the logical sector size disks present.
const SectorSize = 512

// Errors.
var (
	ErrOutOfRange = errors.New("disk: access beyond the end of the disk")
	ErrReadOnly   = errors.New("disk: read-only")
	ErrBadSize    = errors.New("disk: size must be a positive multiple of 512 bytes")
)

// Disk is a virtual disk. ReadAt and WriteAt transfer all of p or fail;
// they are safe for concurrent use.
type Disk interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Flush makes every completed write durable (FLUSH CACHE, SYNCHRONIZE
	// CACHE).
	Flush() error
	// Size is the disk's size in bytes, a multiple of SectorSize.
	Size() int64
	ReadOnly() bool
	Close() error
}

// Raw is a disk stored as a plain image file, byte for byte; holes in a
// sparse file read as zeros.
type Raw struct {
	f        *os.File
	size     int64
	readOnly bool
}

var _ Disk = (*Raw)(nil)

// OpenRaw opens a raw image; its size is the file's.
func OpenRaw(path string, readOnly bool) (*Raw, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk image: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		f.Close()
		return nil, fmt.Errorf("disk image %s: not a file or block device", path)
	}
	size := fi.Size()
	if size <= 0 || size%SectorSize != 0 {
		f.Close()
		return nil, fmt.Errorf("%w: %s has %d bytes", ErrBadSize, path, size)
	}
	return &Raw{f: f, size: size, readOnly: readOnly}, nil
}

// CreateRaw makes a sparse raw image of size bytes at path, crash-safely:
// the image is built under a temporary name in the same directory, synced,
// renamed into place and the directory synced, so path never names a
// partial image. An existing file at path is an error.
func CreateRaw(path string, size int64) error {
	if size <= 0 || size%SectorSize != 0 {
		return fmt.Errorf("%w: %d", ErrBadSize, size)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("create disk image: %s already exists", path)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create disk image: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	err = errors.Join(tmp.Truncate(size), tmp.Sync(), tmp.Close())
	if err != nil {
		return fmt.Errorf("create disk image: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil { // fails if path appeared meanwhile
		return fmt.Errorf("create disk image: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func (r *Raw) check(n int, off int64) error {
	if off < 0 || int64(n) > r.size || off > r.size-int64(n) {
		return fmt.Errorf("%w: %d bytes at %d, disk has %d", ErrOutOfRange, n, off, r.size)
	}
	return nil
}

// ReadAt reads len(p) bytes at off.
func (r *Raw) ReadAt(p []byte, off int64) (int, error) {
	if err := r.check(len(p), off); err != nil {
		return 0, err
	}
	return r.f.ReadAt(p, off)
}

// WriteAt writes p at off.
func (r *Raw) WriteAt(p []byte, off int64) (int, error) {
	if r.readOnly {
		return 0, ErrReadOnly
	}
	if err := r.check(len(p), off); err != nil {
		return 0, err
	}
	return r.f.WriteAt(p, off)
}

// Flush syncs the image file.
func (r *Raw) Flush() error {
	if r.readOnly {
		return nil
	}
	return r.f.Sync()
}

// Size is the image's size in bytes.
func (r *Raw) Size() int64 { return r.size }

// ReadOnly reports whether writes are refused.
func (r *Raw) ReadOnly() bool { return r.readOnly }

// Close flushes and closes the image.
func (r *Raw) Close() error { return errors.Join(r.Flush(), r.f.Close()) }
