package disk

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/partita-hv/partita/internal/testenv"
)

func TestCreateRawSparseAndBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := CreateRaw(path, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := CreateRaw(path, 1<<20); err == nil {
		t.Error("CreateRaw over an existing image succeeded")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks; blocks > 64 {
		t.Errorf("1 GiB image allocates %d blocks: not sparse", blocks)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	d, err := OpenRaw(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Size() != 1<<30 {
		t.Errorf("size %d", d.Size())
	}
	buf := make([]byte, 1024)
	for _, off := range []int64{-512, 1<<30 - 512, 1 << 30, 1<<62 + 1} {
		if _, err := d.ReadAt(buf, off); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("read at %d: %v", off, err)
		}
		if _, err := d.WriteAt(buf, off); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("write at %d: %v", off, err)
		}
	}
	copy(buf, "partita")
	if _, err := d.WriteAt(buf, 1<<30-1024); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenRaw(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	got := make([]byte, 1024)
	if _, err := ro.ReadAt(got, 1<<30-1024); err != nil || !bytes.Equal(got, buf) {
		t.Errorf("read back %q %v", got[:8], err)
	}
	if _, err := ro.WriteAt(got, 0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("write to read-only: %v", err)
	}
	for _, bad := range []int64{0, -512, 1000} {
		if err := CreateRaw(filepath.Join(t.TempDir(), "x"), bad); !errors.Is(err, ErrBadSize) {
			t.Errorf("size %d: %v", bad, err)
		}
	}
	odd := filepath.Join(t.TempDir(), "odd")
	os.WriteFile(odd, make([]byte, 1000), 0o644)
	if _, err := OpenRaw(odd, true); !errors.Is(err, ErrBadSize) {
		t.Errorf("1000-byte image: %v", err)
	}
}

// TestRawQemuInterop checks our raw images against QEMU's tools: qemu-img
// reads the size we created, data written by qemu-io reads back through
// Raw, and data written through Raw reads back in qemu-io.
func TestRawQemuInterop(t *testing.T) {
	qemuImg := testenv.RequireTool(t, "qemu-img")
	qemuIO := testenv.RequireTool(t, "qemu-io")
	dir := t.TempDir()
	ours := filepath.Join(dir, "ours.raw")
	if err := CreateRaw(ours, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(qemuImg, "info", "--output=json", "-f", "raw", ours).Output()
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		VirtualSize int64  `json:"virtual-size"`
		Format      string `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.VirtualSize != 64<<20 || info.Format != "raw" {
		t.Fatalf("qemu-img info: %+v %v", info, err)
	}

	theirs := filepath.Join(dir, "theirs.raw")
	if out, err := exec.Command(qemuImg, "create", "-f", "raw", theirs, "8M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v %s", err, out)
	}
	if out, err := exec.Command(qemuIO, "-f", "raw", "-c", "write -P 0xab 4096 4096", theirs).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io write: %v %s", err, out)
	}
	d, err := OpenRaw(theirs, false)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := d.ReadAt(got, 4096); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{0xab}, 4096)) {
		t.Fatalf("qemu-io's pattern reads back wrong: % x %v", got[:4], err)
	}
	if _, err := d.WriteAt(bytes.Repeat([]byte{0xcd}, 8192), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(qemuIO, "-f", "raw", "-c", "read -P 0xcd 1048576 8192", theirs).CombinedOutput(); err != nil || bytes.Contains(out, []byte("Pattern verification failed")) {
		t.Fatalf("qemu-io does not read our pattern: %v %s", err, out)
	}
}
