package memory

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func dupFile(t testing.TB, f *os.File) *os.File {
	t.Helper()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), f.Name())
}
