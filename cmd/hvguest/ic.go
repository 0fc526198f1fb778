package main

import (
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"

	wire "github.com/partita-hv/partita/vmbus/ic"
	"github.com/partita-hv/partita/vsc/ic"
)

// services is hvguest's side of the integration services.
type services struct {
	shutdown chan wire.Shutdown // a shutdown the host asked for, after it was accepted

	mu         sync.Mutex
	hostItems  map[string]string // the external pool, written by the host; guarded by mu
	guestItems map[string]string // the guest pool, read by the host; guarded by mu
	offset     time.Duration     // host clock minus ours, from time sync; guarded by mu
	synced     bool              // guarded by mu
}

// intrinsic are the items of the auto pool.
func intrinsic() [][2]string {
	return [][2]string{
		{"FullyQualifiedDomainName", "hvguest"},
		{"IntegrationServicesVersion", "Partita 1.0"},
		{"OSName", "Partita hvguest"},
		{"OSVersion", runtime.Version()},
		{"ProcessorArchitecture", "x86_64"},
	}
}

// start serves each integration service the host offers; a missing one
// is reported, not fatal.
func (g *guest) startServices() []string {
	s := &services{shutdown: make(chan wire.Shutdown, 1), hostItems: map[string]string{}, guestItems: map[string]string{}}
	g.ic = s
	services := []struct {
		name     string
		typ      [16]byte
		versions []wire.Version
		h        ic.Handler
	}{
		{"heartbeat", wire.HeartbeatType, wire.HeartbeatVersions, s.heartbeat},
		{"shutdown", wire.ShutdownType, wire.ShutdownVersions, s.shutdownRequest},
		{"time sync", wire.TimeSyncType, wire.TimeSyncVersions[:1], s.timeSync},
		{"KVP", wire.KVPType, wire.KVPVersions[:1], s.kvp},
	}
	// Opened together: each open is a few round trips to the root.
	problems := make([]string, len(services))
	var wg sync.WaitGroup
	for i, sv := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ic.Serve(g.client, sv.typ, sv.versions, sv.h); err != nil {
				problems[i] = fmt.Sprintf("%s: %v", sv.name, err)
			}
		}()
	}
	wg.Wait()
	var out []string
	for _, p := range problems {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (s *services) heartbeat(m wire.Message) ic.Answer {
	h, err := wire.ParseHeartbeat(m.Body)
	if err != nil {
		return ic.Answer{Status: wire.StatusFail}
	}
	h.Seq++
	h.AppState = wire.AppHealthy
	body := append([]byte(nil), m.Body...)
	copy(body, h.Encode()[:min(len(body), wire.HeartbeatSize)])
	return ic.Answer{Body: body}
}

func (s *services) shutdownRequest(m wire.Message) ic.Answer {
	req, err := wire.ParseShutdown(m.Body)
	if err != nil || req.Flags&wire.ShutdownRestart != 0 {
		return ic.Answer{Status: wire.StatusFail} // hvguest cannot restart itself: the root restarts partitions
	}
	return ic.Answer{Then: func() { s.shutdown <- req }}
}

func (s *services) timeSync(m wire.Message) ic.Answer {
	t, err := wire.ParseTimeSync(m.Body)
	if err != nil {
		return ic.Answer{Status: wire.StatusFail}
	}
	s.mu.Lock()
	s.offset, s.synced = time.Until(t.Parent), true
	s.mu.Unlock()
	return ic.Answer{}
}

// now is the host's clock, as time sync last said.
func (s *services) now() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().Add(s.offset), s.synced
}

func (s *services) kvp(m wire.Message) ic.Answer {
	k, err := wire.ParseKVP(m.Body)
	if err != nil {
		return ic.Answer{Status: wire.StatusFail}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case k.Op == wire.KVPSet && k.Pool == wire.PoolExternal:
		s.hostItems[k.Key] = k.Value
		return ic.Answer{}
	case k.Op == wire.KVPDelete && k.Pool == wire.PoolExternal:
		delete(s.hostItems, k.Key)
		return ic.Answer{}
	case k.Op == wire.KVPEnumerate:
		var items [][2]string
		switch k.Pool {
		case wire.PoolExternal:
			items = sorted(s.hostItems)
		case wire.PoolGuest:
			items = sorted(s.guestItems)
		case wire.PoolAuto:
			items = intrinsic()
		}
		if int(k.Index) >= len(items) {
			return ic.Answer{Status: wire.StatusNoMoreItems}
		}
		it := items[k.Index]
		body, err := wire.KVP{Op: k.Op, Pool: k.Pool, Index: k.Index, Key: it[0], Value: it[1]}.Encode()
		if err != nil {
			return ic.Answer{Status: wire.StatusFail}
		}
		return ic.Answer{Body: body}
	}
	return ic.Answer{Status: wire.StatusNotSupported}
}

func sorted(m map[string]string) [][2]string {
	out := make([][2]string, 0, len(m))
	for k, v := range m {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}
