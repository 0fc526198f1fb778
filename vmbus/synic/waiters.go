package synic

import (
	"errors"
	"fmt"
	"sync"

	"github.com/partita-hv/partita/vmbus/ring"
)

// ErrClosed: the waiter table was closed.
var ErrClosed = errors.New("synic: closed")

// Waiters is a guest's SINT 2 handler state: one waiter per channel
// event flag (the channel's relid). Drain wakes the waiters of the flags
// the host set.
type Waiters struct {
	mu      sync.RWMutex
	waiters map[uint32]*ring.Event // guarded by mu
	closed  bool                   // guarded by mu
}

// NewWaiters returns an empty table.
func NewWaiters() *Waiters { return &Waiters{waiters: map[uint32]*ring.Event{}} }

// Waiter is one flag's waiter: Wait returns when the host set its flag,
// ring.ErrClosed after Close (its own or the table's).
type Waiter struct {
	*ring.Event
	w    *Waiters
	flag uint32
}

// Add registers the waiter for flag (1..2047). One waiter per flag; Close
// it to register another.
func (w *Waiters) Add(flag uint32) (*Waiter, error) {
	if flag == 0 || flag >= FlagsPerSlot {
		return nil, fmt.Errorf("synic: event flag %d: %w", flag, ErrBadFlag)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	if _, dup := w.waiters[flag]; dup {
		return nil, fmt.Errorf("synic: event flag %d already has a waiter", flag)
	}
	fw := &Waiter{Event: ring.NewEvent(), w: w, flag: flag}
	w.waiters[flag] = fw.Event
	return fw, nil
}

// Close unregisters the waiter and makes its Wait return ring.ErrClosed.
func (fw *Waiter) Close() error {
	fw.w.mu.Lock()
	if fw.w.waiters[fw.flag] == fw.Event {
		delete(fw.w.waiters, fw.flag)
	}
	fw.w.mu.Unlock()
	return fw.Event.Close()
}

// Drain test-and-clears the flags set in e and wakes their waiters. A
// flag with no waiter is dropped, as Linux drops an event for a relid it
// has no channel for.
func (w *Waiters) Drain(e *EventFlags) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	e.Drain(func(flag uint32) {
		if ev := w.waiters[flag]; ev != nil {
			ev.Signal()
		}
	})
}

// Close closes every waiter; later Adds fail.
func (w *Waiters) Close() {
	w.mu.Lock()
	w.closed = true
	all := w.waiters
	w.waiters = map[uint32]*ring.Event{}
	w.mu.Unlock()
	for _, ev := range all {
		ev.Close()
	}
}
