package hv_test

import (
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/internal/testplatform"
	"github.com/partita-hv/partita/internal/vmbustest"
	"github.com/partita-hv/partita/partition/gen2"
	"github.com/partita-hv/partita/vmbus/echo"
	"github.com/partita-hv/partita/vmbus/host"
)

// buildGuest builds testdata/name as a static Generation 2 guest.
func buildGuest(t testing.TB, name string) string {
	return testguest.GoProgram(t, t.TempDir(), "vsc/hv/testdata/"+name)
}

// rootSide is what the root runs for a Generation 2 partition's VMBus:
// the server over the partition's memory, offering the echo device.
type rootSide struct {
	*vmbustest.Host
	echo *echo.Device
}

const memSize = 64 << 20

func newRootSide(t testing.TB) *rootSide {
	t.Helper()
	dev := &echo.Device{}
	return &rootSide{Host: vmbustest.NewHost(t, memSize, vmbustest.Device{Spec: host.OfferSpec{InterfaceType: echo.InterfaceType}, Device: dev}), echo: dev}
}

func runGuest(t testing.TB, r *rootSide, prog string, args ...string) (gen2.Exit, string, time.Duration) {
	t.Helper()
	var out testenv.Buffer
	p, err := gen2.New(gen2.Config{Name: "echo", Program: prog, Args: args, Memory: memSize,
		Console: &out, GuestMemory: r.Map(t), VMBus: r.GuestConn})
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
	testplatform.Gen2(t)
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
	if s := r.Server.Stats(); s.ProtocolErrors != 0 || s.ChannelFailures != 0 || s.ChannelsOpened != 1 {
		t.Errorf("server %+v", s)
	}
	t.Logf("run took %v", took)
}
