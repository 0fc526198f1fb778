package testenv

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/partita-hv/partita/partition/platform/kvm"
)

// RequireKVM skips the test where /dev/kvm is not usable (no package
// provides it, so this skips under CI too), and fails it on any other
// error opening it.
func RequireKVM(t testing.TB) {
	t.Helper()
	s, err := kvm.Open()
	if errors.Is(err, kvm.ErrUnavailable) {
		t.Skipf("no usable /dev/kvm on this machine: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// Buffer is a bytes.Buffer that a test can read while a vCPU thread or
// a process's copying goroutine writes it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what has been written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
