package control

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPairPassesMemfd(t *testing.T) {
	root, worker, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	w, err := FromFile(worker)
	worker.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	fd, err := unix.MemfdCreate("t", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	mf := os.NewFile(uintptr(fd), "memfd")
	defer mf.Close()
	if err := mf.Truncate(8192); err != nil {
		t.Fatal(err)
	}
	start := &Message{Type: TypeStart, Seq: 1, Start: &Start{Name: "a", ID: "x", Generation: 1, MemoryBytes: 8192, Processors: 1}}
	if err := root.Send(start, mf); err != nil {
		t.Fatal(err)
	}
	m, files, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != TypeStart || m.Seq != 1 || m.Start.Name != "a" || len(files) != 1 {
		t.Fatalf("got %+v with %d files", m, len(files))
	}
	st, err := files[0].Stat()
	files[0].Close()
	if err != nil || st.Size() != 8192 {
		t.Fatalf("passed memfd: size %v, %v", st, err)
	}

	// A request that must not carry descriptors is refused and its
	// descriptor closed, and the connection goes on working.
	if err := root.Send(&Message{Type: TypePause, Seq: 2}, mf); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Recv(); err == nil {
		t.Fatal("pause with a descriptor accepted")
	}
	if err := root.Send(&Message{Type: TypeResume, Seq: 3}); err != nil {
		t.Fatal(err)
	}
	if m, _, err := w.Recv(); err != nil || m.Type != TypeResume {
		t.Fatalf("after a refused record: %+v, %v", m, err)
	}
	root.Close()
	if _, _, err := w.Recv(); err != ErrClosed {
		t.Fatalf("after the peer closed: %v, want ErrClosed", err)
	}
}

func TestRecvRefusesHostileRecords(t *testing.T) {
	for _, rec := range []string{
		``,
		`{}`,
		`{"type":"start"}`,
		`{"type":"explode"}`,
		`{"type":"pause","extra":1}`,
		`{"type":"pause"} {"type":"pause"}`,
		`{"type":"pause"}}`,
		`{"type":"pause"}]`,
		`[1,2]`,
		`{"type":"stopped"}`,
	} {
		m, err := Decode([]byte(rec))
		if err == nil {
			err = m.Validate(0)
		}
		if err == nil {
			t.Errorf("%q accepted", rec)
		}
	}
}

func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/seed/*.json")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 0)
	}
	f.Fuzz(func(t *testing.T, b []byte, nfds int) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if m.Validate(nfds&3) == nil && m.Type == TypeStart && m.Start == nil {
			t.Fatal("start without a partition validated")
		}
	})
}

// TestStartDescriptors: a start carries the memfd, and the VMBus socket
// only when it says so and only for Generation 2.
func TestStartDescriptors(t *testing.T) {
	for _, c := range []struct {
		gen   int
		vmbus bool
		nfds  int
		ok    bool
	}{
		{1, false, 1, true},
		{2, false, 1, true},
		{2, true, 2, true},
		{2, true, 1, false},
		{2, false, 2, false},
		{1, true, 2, false},
	} {
		m := &Message{Type: TypeStart, Start: &Start{Name: "p", Generation: c.gen, VMBus: c.vmbus}}
		if err := m.Validate(c.nfds); (err == nil) != c.ok {
			t.Errorf("generation %d vmbus %v with %d fds: %v", c.gen, c.vmbus, c.nfds, err)
		}
	}
}
