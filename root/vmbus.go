package root

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus/host"
	wire "github.com/partita-hv/partita/vmbus/ic"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vmbus/uart"
	"github.com/partita-hv/partita/vmbus/xproc"
	"github.com/partita-hv/partita/vsp/console"
	"github.com/partita-hv/partita/vsp/ic"
)

// partitionBus is the VMBus host the root runs for one Generation 2
// partition: the transport to its worker (over a socket, with the
// partition's memory mapped here), the channel server, and the device
// providers it offers: the synthetic console and the heartbeat,
// shutdown, time sync and KVP integration services. The worker relays
// control messages and channel interrupts; the program's doorbells reach
// the server's eventfds through the platform (a KVM ioeventfd, or the
// ptrace platform's own write), and the devices read and write
// the rings in guest memory themselves.
type partitionBus struct {
	tr      *xproc.Host
	srv     *host.Server
	console *console.Device

	heartbeat                   *ic.Heartbeat
	kvp                         *ic.KVP
	hbDev, sdDev, kvpDev, tsDev *ic.Device
	shutdownSvc                 *ic.Shutdown
}

// busConfig is what a partition's bus needs from the root.
type busConfig struct {
	consoleOut                          io.Writer
	hostItems                           func() map[string]string // the host KVP items to give a guest that connects
	heartbeatInterval, heartbeatTimeout time.Duration            // 0: the IC's defaults
	poll                                time.Duration            // the devices' ring polling; see Config.VMBusPoll
	log                                 hclog.Logger
}

// vmbusPoll is the devices' ring polling time (Config.VMBusPoll).
func (s *Service) vmbusPoll() time.Duration {
	switch {
	case s.cfg.VMBusPoll == 0:
		return host.DefaultPoll
	case s.cfg.VMBusPoll < 0:
		return 0
	}
	return s.cfg.VMBusPoll
}

// newPartitionBus starts the server over mem and offers the devices. It
// returns the worker's end of the transport socket, which the caller
// hands over and closes.
func newPartitionBus(mem *guestmem.Memory, cfg busConfig) (*partitionBus, *os.File, error) {
	tr, guestEnd, err := xproc.NewHost(mem, cfg.log)
	if err != nil {
		return nil, nil, err
	}
	b := &partitionBus{
		tr: tr, srv: host.NewServer(tr, host.Config{Logger: cfg.log, Endpoint: ring.EndpointConfig{Spin: cfg.poll}}),
		console:     &console.Device{Output: cfg.consoleOut},
		heartbeat:   &ic.Heartbeat{Interval: cfg.heartbeatInterval, Timeout: cfg.heartbeatTimeout},
		kvp:         &ic.KVP{Initial: cfg.hostItems},
		shutdownSvc: &ic.Shutdown{},
	}
	b.hbDev = &ic.Device{Service: b.heartbeat}
	b.sdDev = &ic.Device{Service: b.shutdownSvc}
	b.kvpDev = &ic.Device{Service: b.kvp}
	b.tsDev = &ic.Device{Service: &ic.TimeSync{}}
	offers := []struct {
		spec host.OfferSpec
		dev  host.Device
	}{
		{host.OfferSpec{InterfaceType: uart.InterfaceType, InterfaceInstance: uart.InstanceCOM1}, b.console},
		{ic.Offer(wire.HeartbeatType, wire.HeartbeatInstance), b.hbDev},
		{ic.Offer(wire.ShutdownType, wire.ShutdownInstance), b.sdDev},
		{ic.Offer(wire.TimeSyncType, wire.TimeSyncInstance), b.tsDev},
		{ic.Offer(wire.KVPType, wire.KVPInstance), b.kvpDev},
	}
	for _, o := range offers {
		if _, err := b.srv.Offer(o.spec, o.dev); err != nil {
			b.close()
			guestEnd.Close()
			return nil, nil, err
		}
	}
	return b, guestEnd, nil
}

// shutdown asks the guest to shut down through its shutdown IC.
func (b *partitionBus) shutdown(ctx context.Context, force bool, reason string) error {
	c := b.sdDev.Conn()
	if c == nil {
		return ic.ErrNotConnected
	}
	return b.shutdownSvc.Request(ctx, c, force, false, reason)
}

// kvpConn is the negotiated KVP channel.
func (b *partitionBus) kvpConn() (*ic.Conn, error) {
	c := b.kvpDev.Conn()
	if c == nil {
		return nil, ic.ErrNotConnected
	}
	return c, nil
}

// stats are the server's counters, the devices' fault counts and the
// rings' traffic.
func (b *partitionBus) stats() map[string]uint64 {
	st := b.srv.Stats()
	return map[string]uint64{
		"messages":            st.Messages,
		"protocol_errors":     st.ProtocolErrors,
		"channel_failures":    st.ChannelFailures,
		"channels_opened":     st.ChannelsOpened,
		"gpadls_created":      st.GPADLsCreated,
		"device_faults":       b.console.Faults() + b.hbDev.Faults() + b.sdDev.Faults() + b.kvpDev.Faults() + b.tsDev.Faults(),
		"packets_from_guest":  st.PacketsFromGuest,
		"packets_to_guest":    st.PacketsToGuest,
		"interrupts_to_guest": st.InterruptsToGuest,
		"guest_wakeups":       st.GuestWakeups,
	}
}

// close stops the server (closing every channel and its device) and the
// transport.
func (b *partitionBus) close() {
	b.srv.Close()
	b.tr.Close()
}
