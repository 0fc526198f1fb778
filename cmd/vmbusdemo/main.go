// Command vmbusdemo runs the VMBus core end to end across two processes: it
// creates a partition's guest memory (a memfd), starts a VMBus channel
// server offering an echo device, and re-executes itself as the guest
// process, which negotiates a protocol version, opens the channel over a
// GPADL and streams checksummed packets that the device verifies and
// echoes back. It prints what each side saw and the throughput.
//
// It is what the README's run command starts until the root service
// exists.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/echo"
	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vmbus/xproc"
)

const memSize = 64 << 20

func main() {
	packets := flag.Int("packets", 200000, "packets the guest sends")
	size := flag.Int("size", 0, "data bytes per packet (0: a mix of sizes)")
	completions := flag.Bool("echo", true, "ask the device to echo every packet back")
	flag.Parse()
	log := hclog.New(&hclog.LoggerOptions{Name: "vmbusdemo"})
	var err error
	if flag.Arg(0) == "guest" {
		err = guest(log.Named("guest"), *packets, *size, *completions)
	} else {
		err = run(log.Named("host"), *packets, *size, *completions)
	}
	if err != nil {
		log.Error("failed", "error", err)
		os.Exit(1)
	}
}

// run is the host side: guest memory, transport, server, echo device, and
// the guest process.
func run(log hclog.Logger, packets, size int, completions bool) error {
	mem, err := guestmem.New("vmbusdemo", memSize)
	if err != nil {
		return err
	}
	defer mem.Close()
	tr, conn, err := xproc.NewHost(mem, log)
	if err != nil {
		return err
	}
	defer tr.Close()
	srv := host.NewServer(tr, host.Config{Logger: log, Endpoint: ring.EndpointConfig{Spin: 20 * time.Microsecond}})
	defer srv.Close()
	dev := &echo.Device{}
	if _, err := srv.Offer(host.OfferSpec{InterfaceType: echo.InterfaceType}, dev); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, fmt.Sprintf("-packets=%d", packets), fmt.Sprintf("-size=%d", size),
		fmt.Sprintf("-echo=%v", completions), "guest")
	cmd.ExtraFiles = []*os.File{conn, mem.File()} // fd 3: messages, fd 4: guest memory
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	log.Info("starting guest process", "memory_mib", memSize>>20)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("guest process: %w", err)
	}
	n, bytes, faults := dev.Stats()
	st := srv.Stats()
	log.Info("host side done", "verified_packets", n, "data_bytes", bytes, "faults", faults,
		"guest_messages", st.Messages, "protocol_errors", st.ProtocolErrors, "gpadls", st.GPADLsCreated,
		"wall", time.Since(start).Round(time.Millisecond))
	if n != uint64(packets) || faults != 0 {
		return fmt.Errorf("device verified %d of %d packets with %d faults", n, packets, faults)
	}
	return nil
}

// guest is the guest process: fd 3 is the message socket, fd 4 the memfd.
func guest(log hclog.Logger, packets, size int, completions bool) error {
	gmem, err := guestmem.Open(os.NewFile(4, "guest-memory"), memSize)
	if err != nil {
		return err
	}
	defer gmem.Close()
	// Page 0 is the SynIC event-flags page; rings go above it.
	g, err := xproc.Dial(os.NewFile(3, "vmbus"), gmem, 0)
	if err != nil {
		return err
	}
	defer g.Close()
	pages, err := guestmem.NewPageAllocator(guestmem.PageSize, memSize)
	if err != nil {
		return err
	}
	c, err := client.Connect(g, client.Config{Pages: pages, Endpoint: ring.EndpointConfig{Spin: 20 * time.Microsecond}})
	if err != nil {
		return err
	}
	for _, o := range c.Offers() {
		log.Info("offer", "relid", o.ChildRelID, "type", o.InterfaceType.String(), "connection_id", fmt.Sprintf("%#x", o.ConnectionID))
	}
	log.Info("connected", "version", c.Version().String())
	sizes := echo.Mixed
	if size > 0 {
		sizes = echo.Fixed(size)
	}
	res, err := echo.RunGuest(c, 64, packets, sizes, echo.Options{Completions: completions})
	if err != nil {
		return err
	}
	log.Info("stream done", "packets", res.Packets, "completions_checked", completions,
		"elapsed", res.Elapsed.Round(time.Microsecond),
		"packets_per_s", int(float64(res.Packets)/res.Elapsed.Seconds()),
		"signals_sent", res.Stats.SignalsSent, "wakeups", res.Stats.Wakeups)
	return c.Disconnect()
}
