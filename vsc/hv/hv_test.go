package hv_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/partition/gen2"
	"github.com/partita-hv/partita/partition/memory"
	"github.com/partita-hv/partita/vmbus/echo"
	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/xproc"
)

// buildGuest builds testdata/name as a static Generation 2 guest.
func buildGuest(t testing.TB, name string) string {
	t.Helper()
	gotool := testenv.RequireTool(t, "go")
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(gotool, "build", "-o", bin, "./testdata/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// rootSide is what the root runs for a Generation 2 partition's VMBus:
// its own mapping of guest memory, the transport host and the server.
type rootSide struct {
	mem   *memory.Memory // the partition's, handed to the worker
	tr    *xproc.Host
	srv   *host.Server
	conn  *os.File // the worker's end of the socket
	rmem  *memory.Memory
	echo  *echo.Device
	close func()
}

const memSize = 64 << 20

func newRootSide(t testing.TB) *rootSide {
	t.Helper()
	mem, err := memory.New("hv-test", memSize)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(mem.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	rmem, err := memory.Open(os.NewFile(uintptr(fd), "root-view"), memSize)
	if err != nil {
		t.Fatal(err)
	}
	tr, conn, err := xproc.NewHost(rmem, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := host.NewServer(tr, host.Config{})
	dev := &echo.Device{}
	if _, err := srv.Offer(host.OfferSpec{InterfaceType: echo.InterfaceType}, dev); err != nil {
		t.Fatal(err)
	}
	r := &rootSide{mem: mem, tr: tr, srv: srv, conn: conn, rmem: rmem, echo: dev}
	r.close = func() { srv.Close(); tr.Close(); conn.Close(); rmem.Close() }
	t.Cleanup(r.close)
	return r
}

func runGuest(t testing.TB, r *rootSide, prog string, args ...string) (gen2.Exit, string, time.Duration) {
	t.Helper()
	var out testenv.Buffer
	p, err := gen2.New(gen2.Config{Name: "echo", Program: prog, Args: args, Memory: memSize,
		Console: &out, GuestMemory: r.mem, VMBus: r.conn})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	exit := p.Run()
	return exit, out.String(), time.Since(start)
}

// TestVMBusEchoInsidePartition: a Go program in a Generation 2 partition
// connects VMBus through the hypercall page and SynIC, opens the echo
// device over GPADL rings in its own memory and streams checksummed
// packets, with completions, to a server on the root's side.
func TestVMBusEchoInsidePartition(t *testing.T) {
	testenv.RequireKVM(t)
	r := newRootSide(t)
	exit, out, took := runGuest(t, r, buildGuest(t, "echoguest"), "5000", "completions")
	t.Logf("console:\n%s", out)
	if !exit.Clean || exit.Code != 0 {
		t.Fatalf("exit %+v", exit)
	}
	if !strings.Contains(out, "echo ok: 5000 packets") {
		t.Fatalf("no echo")
	}
	if n, _, faults := r.echo.Stats(); n != 5000 || faults != 0 {
		t.Errorf("device saw %d packets, %d faults", n, faults)
	}
	if s := r.srv.Stats(); s.ProtocolErrors != 0 || s.ChannelFailures != 0 || s.ChannelsOpened != 1 {
		t.Errorf("server %+v", s)
	}
	t.Logf("run took %v", took)
}
