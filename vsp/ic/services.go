package ic

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/partita-hv/partita/vmbus/ic"
)

// ErrRefused: the guest answered a request with a failure status.
var ErrRefused = errors.New("the guest refused")

// Heartbeat asks the guest for a heartbeat every Interval; the guest is
// lost when none has come back for Timeout.
type Heartbeat struct {
	Interval time.Duration // default 1 s
	Timeout  time.Duration // default 5 s

	mu       sync.Mutex
	lastOK   time.Time // guarded by mu
	appState uint32    // guarded by mu
	seq      uint64    // guarded by mu
}

// Heartbeat states, as Msvm_HeartbeatComponent reports them.
const (
	HeartbeatNoContact = "no contact"
	HeartbeatOK        = "ok"
	HeartbeatLost      = "lost communication"
)

func (h *Heartbeat) Type() uint16            { return ic.TypeHeartbeat }
func (h *Heartbeat) Versions() []ic.Version  { return ic.HeartbeatVersions }
func (h *Heartbeat) interval() time.Duration { return orDefault(h.Interval, time.Second) }
func (h *Heartbeat) timeout() time.Duration  { return orDefault(h.Timeout, 5*time.Second) }

// orDefault is v, or def when v is not set.
func orDefault(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// Status says whether heartbeats come back: no contact (never), ok, or
// lost (none for Timeout), and the application state the guest last
// reported.
func (h *Heartbeat) Status() (string, uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.lastOK.IsZero():
		return HeartbeatNoContact, ic.AppUnknown
	case time.Since(h.lastOK) > h.timeout():
		return HeartbeatLost, h.appState
	}
	return HeartbeatOK, h.appState
}

func (h *Heartbeat) Run(ctx context.Context, c *Conn) error {
	for {
		h.mu.Lock()
		h.seq++
		seq := h.seq
		h.mu.Unlock()
		m, err := c.Transact(ctx, ic.TypeHeartbeat, ic.Heartbeat{Seq: seq}.Encode(), 64)
		if err != nil {
			return err
		}
		b, err := ic.ParseHeartbeat(m.Body)
		if err != nil || b.Seq != seq+1 {
			return c.check(fmt.Errorf("%w: heartbeat %d answered with %d (%v)", errGuest, seq, b.Seq, err))
		}
		h.mu.Lock()
		h.lastOK, h.appState = time.Now(), b.AppState
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(h.interval()):
		}
	}
}

// Shutdown asks the guest to shut down.
type Shutdown struct{}

func (s *Shutdown) Type() uint16           { return ic.TypeShutdown }
func (s *Shutdown) Versions() []ic.Version { return ic.ShutdownVersions }
func (s *Shutdown) Run(ctx context.Context, _ *Conn) error {
	<-ctx.Done()
	return ctx.Err()
}

// Request sends the shutdown request on c and returns the guest's answer:
// nil if it accepted (it then shuts down).
func (s *Shutdown) Request(ctx context.Context, c *Conn, force, restart bool, message string) error {
	var flags uint32
	if force {
		flags |= ic.ShutdownForce
	}
	if restart {
		flags |= ic.ShutdownRestart
	}
	m, err := c.Transact(ctx, ic.TypeShutdown, ic.Shutdown{Reason: ic.ReasonPlanned, Flags: flags, Message: message}.Encode(), 0)
	if err != nil {
		return err
	}
	if m.Status != ic.StatusOK {
		return fmt.Errorf("%w to shut down (status %#x)", ErrRefused, m.Status)
	}
	return nil
}

// TimeSync tells the guest the host's time when it connects (a sync) and
// every Interval after (samples).
type TimeSync struct {
	Interval time.Duration // default 5 s
}

func (t *TimeSync) Type() uint16           { return ic.TypeTimeSync }
func (t *TimeSync) Versions() []ic.Version { return ic.TimeSyncVersions[:1] } // 4.0: the layout this package speaks
func (t *TimeSync) Run(ctx context.Context, c *Conn) error {
	flags := uint8(ic.TimeSync)
	for {
		if _, err := c.Transact(ctx, ic.TypeTimeSync, ic.TimeSyncMsg{Parent: time.Now(), Flags: flags}.Encode(), 0); err != nil {
			return err
		}
		flags = ic.TimeSample
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(orDefault(t.Interval, 5*time.Second)):
		}
	}
}

// KVP exchanges key-value pairs with the guest.
type KVP struct {
	// Initial, if set, gives the host items to write into the guest when
	// it connects.
	Initial func() map[string]string
}

// KVPItem is one key-value pair.
type KVPItem struct {
	Name, Data string
}

// maxKVPItems bounds one pool's enumeration.
const maxKVPItems = 1024

func (k *KVP) Type() uint16           { return ic.TypeKVP }
func (k *KVP) Versions() []ic.Version { return ic.KVPVersions[:1] } // 4.0
func (k *KVP) Run(ctx context.Context, c *Conn) error {
	if k.Initial != nil {
		for name, data := range k.Initial() {
			// A guest may refuse an item; it still gets the others.
			if err := k.Set(ctx, c, name, data); err != nil && !errors.Is(err, ErrRefused) {
				return err
			}
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// Set writes a host item (the external pool) into the guest.
func (k *KVP) Set(ctx context.Context, c *Conn, name, data string) error {
	return k.call(ctx, c, ic.KVP{Op: ic.KVPSet, Pool: ic.PoolExternal, Key: name, Value: data})
}

// Delete removes a host item from the guest.
func (k *KVP) Delete(ctx context.Context, c *Conn, name string) error {
	return k.call(ctx, c, ic.KVP{Op: ic.KVPDelete, Pool: ic.PoolExternal, Key: name})
}

func (k *KVP) call(ctx context.Context, c *Conn, req ic.KVP) error {
	body, err := req.Encode()
	if err != nil {
		return err
	}
	m, err := c.Transact(ctx, ic.TypeKVP, body, 0)
	if err != nil {
		return err
	}
	if m.Status != ic.StatusOK {
		return fmt.Errorf("%w the KVP operation (status %#x)", ErrRefused, m.Status)
	}
	return nil
}

// Items enumerates one of the guest's pools.
func (k *KVP) Items(ctx context.Context, c *Conn, pool uint8) ([]KVPItem, error) {
	var items []KVPItem
	for i := uint32(0); i < maxKVPItems; i++ {
		body, err := ic.KVP{Op: ic.KVPEnumerate, Pool: pool, Index: i}.Encode()
		if err != nil {
			return nil, err
		}
		m, err := c.Transact(ctx, ic.TypeKVP, body, 0)
		if err != nil {
			return nil, err
		}
		if m.Status != ic.StatusOK {
			return items, nil // the end of the pool
		}
		got, err := ic.ParseKVP(m.Body)
		if err != nil {
			return nil, c.check(fmt.Errorf("%w: %v", errGuest, err))
		}
		items = append(items, KVPItem{Name: got.Key, Data: got.Value})
	}
	return items, nil
}
