package root

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	wire "github.com/partita-hv/partita/vmbus/ic"
	"github.com/partita-hv/partita/vsp/ic"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// Limits on host KVP items.
const (
	maxKVPItems   = 256
	maxKVPName    = 255
	maxKVPData    = 1023 // characters; the wire holds 2048 bytes of UTF-16 with a terminator
	icCallTimeout = 10 * time.Second
)

// runningBus returns a running Generation 2 partition's VMBus host.
func (s *Service) runningBus(name string) (*partition, *partitionBus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	if p.def.Generation != 2 {
		return nil, nil, fault(wmiapi.CodeNotSupported, "partition %s is Generation 1: integration services need a Generation 2 partition", p.def.Name)
	}
	if p.worker == nil || p.worker.bus == nil {
		return p, nil, fault(wmiapi.CodeInvalidState, "partition %s is not running", p.def.Name)
	}
	return p, p.worker.bus, nil
}

// icFault turns an integration service error into an API fault.
func icFault(p *partition, what string, err error) error {
	switch {
	case errors.Is(err, ic.ErrNotConnected):
		return fault(wmiapi.CodeInvalidState, "partition %s: %s: %v", p.def.Name, what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fault(wmiapi.CodeInvalidState, "partition %s: %s: the guest did not answer within %v", p.def.Name, what, icCallTimeout)
	case errors.Is(err, ic.ErrRefused):
		return fault(wmiapi.CodeConflict, "partition %s: %s: %v", p.def.Name, what, err)
	}
	return fault(wmiapi.CodeInvalidState, "partition %s: %s: %v", p.def.Name, what, err)
}

// Heartbeat reports the heartbeat integration service's status.
func (s *Service) Heartbeat(name string) (wmiapi.HeartbeatComponent, error) {
	s.mu.Lock()
	p, err := s.lookup(name)
	if err != nil {
		s.mu.Unlock()
		return wmiapi.HeartbeatComponent{}, err
	}
	id, gen, w := p.def.ID, p.def.Generation, p.worker
	s.mu.Unlock()
	h := wmiapi.HeartbeatComponent{SystemName: id, ElementName: "Heartbeat",
		OperationalStatus: []uint16{wmiapi.StatusNoContact}, StatusDescriptions: []string{"No Contact"}}
	if gen != 2 || w == nil || w.bus == nil {
		return h, nil
	}
	st, app := w.bus.heartbeat.Status()
	switch st {
	case ic.HeartbeatOK:
		h.OperationalStatus, h.StatusDescriptions = []uint16{wmiapi.StatusOK}, []string{"OK"}
		switch app {
		case wire.AppHealthy:
			h.OperationalStatus = append(h.OperationalStatus, wmiapi.StatusOK)
			h.StatusDescriptions = append(h.StatusDescriptions, "Application healthy")
		case wire.AppCritical:
			h.OperationalStatus = append(h.OperationalStatus, wmiapi.StatusDegraded)
			h.StatusDescriptions = append(h.StatusDescriptions, "Application critical")
		}
	case ic.HeartbeatLost:
		h.OperationalStatus, h.StatusDescriptions = []uint16{wmiapi.StatusLostCommunication}, []string{"Lost Communication"}
	}
	return h, nil
}

// InitiateShutdown asks a Generation 2 guest to shut down through its
// shutdown integration service. It returns once the guest accepted; the
// partition turns Off when the program ends.
func (s *Service) InitiateShutdown(name string, req wmiapi.ShutdownRequest) error {
	if len(req.Reason) > 2047 || strings.ContainsRune(req.Reason, 0) {
		return invalid("Reason: at most 2047 characters, no NUL")
	}
	p, bus, err := s.runningBus(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), icCallTimeout)
	defer cancel()
	if err := bus.shutdown(ctx, req.Force, req.Reason); err != nil {
		return icFault(p, "shut down", err)
	}
	p.log.Info("guest accepted a shutdown request", "force", req.Force, "reason", req.Reason)
	return nil
}

// KvpExchange reads the guest's items and lists the host's.
func (s *Service) KvpExchange(name string) (wmiapi.KvpExchangeComponent, error) {
	s.mu.Lock()
	p, err := s.lookup(name)
	if err != nil {
		s.mu.Unlock()
		return wmiapi.KvpExchangeComponent{}, err
	}
	k := wmiapi.KvpExchangeComponent{SystemName: p.def.ID, GuestExchangeItems: []wmiapi.KvpExchangeDataItem{},
		GuestIntrinsicExchangeItems: []wmiapi.KvpExchangeDataItem{}, HostExchangeItems: hostItemList(p.def.KVP)}
	running := p.worker != nil && p.worker.bus != nil
	s.mu.Unlock()
	if !running {
		return k, nil
	}
	p, bus, err := s.runningBus(name)
	if err != nil {
		return k, nil // it stopped meanwhile
	}
	c, err := bus.kvpConn()
	if err != nil {
		return k, nil // the guest has not connected KVP: it reports nothing
	}
	ctx, cancel := context.WithTimeout(context.Background(), icCallTimeout)
	defer cancel()
	for _, pool := range []struct {
		pool   uint8
		source uint16
		into   *[]wmiapi.KvpExchangeDataItem
	}{
		{wire.PoolGuest, wmiapi.KvpSourceGuest, &k.GuestExchangeItems},
		{wire.PoolAuto, wmiapi.KvpSourceGuestIntrinsic, &k.GuestIntrinsicExchangeItems},
	} {
		items, err := bus.kvp.Items(ctx, c, pool.pool)
		if err != nil {
			return k, icFault(p, "read KVP items", err)
		}
		for _, it := range items {
			*pool.into = append(*pool.into, wmiapi.KvpExchangeDataItem{Name: it.Name, Data: it.Data, Source: pool.source})
		}
	}
	return k, nil
}

func hostItemList(m map[string]string) []wmiapi.KvpExchangeDataItem {
	out := []wmiapi.KvpExchangeDataItem{}
	for n, d := range m {
		out = append(out, wmiapi.KvpExchangeDataItem{Name: n, Data: d, Source: wmiapi.KvpSourceHost})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// hostItems copies a partition's host KVP items.
func (s *Service) hostItems(p *partition) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]string, len(p.def.KVP))
	for k, v := range p.def.KVP {
		m[k] = v
	}
	return m
}

func checkKVPName(n string) error {
	if n == "" || utf8.RuneCountInString(n) > maxKVPName || !utf8.ValidString(n) || strings.ContainsRune(n, 0) {
		return invalid("KVP item name %q: 1 to %d characters of UTF-8, no NUL", n, maxKVPName)
	}
	return nil
}

// AddKvpItems adds or replaces host items, saves them with the
// definition, and writes them into a running guest.
func (s *Service) AddKvpItems(target string, items []wmiapi.KvpExchangeDataItem) error {
	if len(items) == 0 || len(items) > maxKVPItems {
		return invalid("want 1 to %d DataItems", maxKVPItems)
	}
	for _, it := range items {
		if err := checkKVPName(it.Name); err != nil {
			return err
		}
		if utf8.RuneCountInString(it.Data) > maxKVPData || !utf8.ValidString(it.Data) || strings.ContainsRune(it.Data, 0) {
			return invalid("KVP item %q: data of at most %d characters of UTF-8, no NUL", it.Name, maxKVPData)
		}
		if it.Source != wmiapi.KvpSourceHost {
			return invalid("KVP item %q: Source %d; only host items (0) can be added", it.Name, it.Source)
		}
	}
	if _, err := s.update(target, false, func(d *Definition) error {
		if d.Generation != 2 {
			return fault(wmiapi.CodeNotSupported, "partition %s is Generation 1: KVP needs a Generation 2 partition", d.Name)
		}
		if d.KVP == nil {
			d.KVP = map[string]string{}
		}
		for _, it := range items {
			d.KVP[it.Name] = it.Data
		}
		if len(d.KVP) > maxKVPItems {
			return invalid("a partition holds at most %d host KVP items", maxKVPItems)
		}
		return nil
	}); err != nil {
		return err
	}
	return s.pushKVP(target, func(ctx context.Context, bus *partitionBus, c *ic.Conn) error {
		for _, it := range items {
			if err := bus.kvp.Set(ctx, c, it.Name, it.Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// RemoveKvpItems removes host items, from the definition and from a
// running guest.
func (s *Service) RemoveKvpItems(target string, names []string) error {
	if len(names) == 0 || len(names) > maxKVPItems {
		return invalid("want 1 to %d DataItems", maxKVPItems)
	}
	for _, n := range names {
		if err := checkKVPName(n); err != nil {
			return err
		}
	}
	if _, err := s.update(target, false, func(d *Definition) error {
		for _, n := range names {
			if _, ok := d.KVP[n]; !ok {
				return fault(wmiapi.CodeNotFound, "partition %s has no host KVP item %q", d.Name, n)
			}
			delete(d.KVP, n)
		}
		return nil
	}); err != nil {
		return err
	}
	return s.pushKVP(target, func(ctx context.Context, bus *partitionBus, c *ic.Conn) error {
		for _, n := range names {
			if err := bus.kvp.Delete(ctx, c, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// pushKVP applies a change to a running guest that has KVP connected;
// a guest that has not gets the saved items when it connects.
func (s *Service) pushKVP(target string, fn func(context.Context, *partitionBus, *ic.Conn) error) error {
	p, bus, err := s.runningBus(target)
	if err != nil {
		return nil // saved; not running
	}
	c, err := bus.kvpConn()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), icCallTimeout)
	defer cancel()
	if err := fn(ctx, bus, c); err != nil {
		return icFault(p, "KVP", err)
	}
	return nil
}
