package ic_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/vmbustest"
	"github.com/partita-hv/partita/vmbus/client"
	wire "github.com/partita-hv/partita/vmbus/ic"
	"github.com/partita-hv/partita/vmbus/packet"
	guest "github.com/partita-hv/partita/vsc/ic"
	"github.com/partita-hv/partita/vsp/ic"
)

// waitConn waits for a device's channel to be negotiated.
func waitConn(t *testing.T, d *ic.Device) *ic.Conn {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if c := d.Conn(); c != nil {
			return c
		}
	}
	t.Fatal("the IC never negotiated")
	return nil
}

func TestHeartbeat(t *testing.T) {
	hb := &ic.Heartbeat{Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond}
	dev := &ic.Device{Service: hb}
	c, _ := vmbustest.Connect(t, vmbustest.Device{Spec: ic.Offer(wire.HeartbeatType, wire.HeartbeatInstance), Device: dev})
	if st, _ := hb.Status(); st != ic.HeartbeatNoContact {
		t.Errorf("before the guest: %s", st)
	}
	var mu sync.Mutex
	deaf := false
	_, err := guest.Serve(c, wire.HeartbeatType, wire.HeartbeatVersions, func(m wire.Message) guest.Answer {
		mu.Lock()
		defer mu.Unlock()
		for deaf {
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
		}
		h, _ := wire.ParseHeartbeat(m.Body)
		h.Seq++
		h.AppState = wire.AppHealthy
		return guest.Answer{Body: h.Encode()}
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := waitConn(t, dev)
	if conn.Framework != (wire.Version{Major: 3}) || conn.Version != (wire.Version{Major: 3}) {
		t.Errorf("negotiated %v/%v", conn.Framework, conn.Version)
	}
	waitStatus := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if st, _ := hb.Status(); st == want {
				return
			}
		}
		st, _ := hb.Status()
		t.Fatalf("heartbeat %s, want %s", st, want)
	}
	waitStatus(ic.HeartbeatOK)
	if _, app := hb.Status(); app != wire.AppHealthy {
		t.Errorf("application state %d", app)
	}
	mu.Lock()
	deaf = true
	mu.Unlock()
	waitStatus(ic.HeartbeatLost)
	mu.Lock()
	deaf = false
	mu.Unlock()
	waitStatus(ic.HeartbeatOK)
}

func TestShutdownAndKVP(t *testing.T) {
	sd, kvp := &ic.Device{Service: &ic.Shutdown{}}, &ic.Device{Service: &ic.KVP{}}
	c, _ := vmbustest.Connect(t,
		vmbustest.Device{Spec: ic.Offer(wire.ShutdownType, wire.ShutdownInstance), Device: sd},
		vmbustest.Device{Spec: ic.Offer(wire.KVPType, wire.KVPInstance), Device: kvp})
	shutdowns := make(chan wire.Shutdown, 1)
	if _, err := guest.Serve(c, wire.ShutdownType, wire.ShutdownVersions, func(m wire.Message) guest.Answer {
		s, err := wire.ParseShutdown(m.Body)
		if err != nil {
			return guest.Answer{Status: wire.StatusFail}
		}
		return guest.Answer{Then: func() { shutdowns <- s }}
	}); err != nil {
		t.Fatal(err)
	}
	var hostMu sync.Mutex
	host := map[string]string{}
	guestItems := []wire.KVP{{Key: "GuestName", Value: "test guest"}, {Key: "Ünicode", Value: "✓"}}
	if _, err := guest.Serve(c, wire.KVPType, wire.KVPVersions, func(m wire.Message) guest.Answer {
		k, err := wire.ParseKVP(m.Body)
		if err != nil {
			return guest.Answer{Status: wire.StatusFail}
		}
		hostMu.Lock()
		defer hostMu.Unlock()
		switch {
		case k.Op == wire.KVPSet && k.Pool == wire.PoolExternal:
			host[k.Key] = k.Value
		case k.Op == wire.KVPDelete && k.Pool == wire.PoolExternal:
			delete(host, k.Key)
		case k.Op == wire.KVPEnumerate && k.Pool == wire.PoolGuest && int(k.Index) < len(guestItems):
			it := guestItems[k.Index]
			body, _ := wire.KVP{Op: k.Op, Pool: k.Pool, Index: k.Index, Key: it.Key, Value: it.Value}.Encode()
			return guest.Answer{Body: body}
		case k.Op == wire.KVPEnumerate:
			return guest.Answer{Status: wire.StatusNoMoreItems}
		default:
			return guest.Answer{Status: wire.StatusFail}
		}
		return guest.Answer{}
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kc := waitConn(t, kvp)
	k := kvp.Service.(*ic.KVP)
	if err := k.Set(ctx, kc, "HostName", "partita-root"); err != nil {
		t.Fatal(err)
	}
	if err := k.Set(ctx, kc, "Gone", "soon"); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(ctx, kc, "Gone"); err != nil {
		t.Fatal(err)
	}
	items, err := k.Items(ctx, kc, wire.PoolGuest)
	if err != nil || len(items) != 2 || items[1] != (ic.KVPItem{Name: "Ünicode", Data: "✓"}) {
		t.Errorf("guest items %+v, %v", items, err)
	}
	hostMu.Lock()
	if len(host) != 1 || host["HostName"] != "partita-root" {
		t.Errorf("guest holds host items %v", host)
	}
	hostMu.Unlock()
	if err := sd.Service.(*ic.Shutdown).Request(ctx, waitConn(t, sd), true, false, "test"); err != nil {
		t.Fatal(err)
	}
	if s := <-shutdowns; s.Flags != wire.ShutdownForce || s.Message != "test" {
		t.Errorf("guest got %+v", s)
	}
}

// TestHostileICGuest: answers that break the protocol fail the channel
// and are counted.
func TestHostileICGuest(t *testing.T) {
	for name, answer := range map[string]func(p []byte) []byte{
		"garbage": func([]byte) []byte { return []byte{1, 2, 3, 4, 5, 6, 7, 8} },
		"no versions": func(p []byte) []byte {
			wire.Reply(p, wire.StatusOK, wire.EncodeNegotiation(wire.Negotiation{}))
			return p
		},
		"version not offered": func(p []byte) []byte {
			wire.Reply(p, wire.StatusOK, wire.EncodeNegotiation(wire.Negotiation{Frameworks: []wire.Version{{Major: 9}}, Services: []wire.Version{{Major: 3}}}))
			return p
		},
	} {
		hb := &ic.Heartbeat{}
		dev := &ic.Device{Service: hb}
		c, srv := vmbustest.Connect(t, vmbustest.Device{Spec: ic.Offer(wire.HeartbeatType, wire.HeartbeatInstance), Device: dev})
		o, err := c.Find(wire.HeartbeatType)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := c.Open(o, client.RingConfig{SendPages: 4, RecvPages: 4})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8192)
		n, err := ch.Endpoint().Recv(buf)
		if err != nil {
			t.Fatal(err)
		}
		var p packet.Packet
		if err := packet.Parse(buf[:n], &p); err != nil {
			t.Fatal(err)
		}
		ch.Endpoint().Send(packet.TypeDataInband, 0, p.TransID, nil, answer(append([]byte(nil), p.Payload...)))
		for deadline := time.Now().Add(5 * time.Second); dev.Faults() == 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		}
		if dev.Faults() != 1 {
			t.Errorf("%s: %d faults", name, dev.Faults())
		}
		for deadline := time.Now().Add(5 * time.Second); srv.Stats().ChannelFailures == 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		}
		if srv.Stats().ChannelFailures != 1 {
			t.Errorf("%s: server %+v", name, srv.Stats())
		}
		ch.Close()
	}
}
