package root

import (
	"io"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/partition/memory"
	"github.com/partita-hv/partita/vmbus/host"
	"github.com/partita-hv/partita/vmbus/uart"
	"github.com/partita-hv/partita/vmbus/xproc"
	"github.com/partita-hv/partita/vsp/console"
)

// partitionBus is the VMBus host the root runs for one Generation 2
// partition: the transport to its worker (over a socket, with the
// partition's memory mapped here), the channel server, and the device
// providers it offers. The worker relays control messages and channel
// interrupts; the program's doorbells reach the server's eventfds straight
// from KVM, and the devices read and write the rings in guest memory
// themselves.
type partitionBus struct {
	tr      *xproc.Host
	srv     *host.Server
	console *console.Device
}

// newPartitionBus starts the server over mem and offers the devices. It
// returns the worker's end of the transport socket, which the caller
// hands over and closes.
func newPartitionBus(mem *memory.Memory, consoleOut io.Writer, log hclog.Logger) (*partitionBus, *os.File, error) {
	tr, guestEnd, err := xproc.NewHost(mem, log)
	if err != nil {
		return nil, nil, err
	}
	b := &partitionBus{tr: tr, srv: host.NewServer(tr, host.Config{Logger: log}), console: &console.Device{Output: consoleOut}}
	if _, err := b.srv.Offer(host.OfferSpec{InterfaceType: uart.InterfaceType, InterfaceInstance: uart.InstanceCOM1}, b.console); err != nil {
		b.close()
		guestEnd.Close()
		return nil, nil, err
	}
	return b, guestEnd, nil
}

// close stops the server (closing every channel and its device) and the
// transport.
func (b *partitionBus) close() {
	b.srv.Close()
	b.tr.Close()
}
