package platform

import (
	"errors"
	"sync"
)

// DoorbellPort is the port of the hypercall page's doorbell: the fast
// HvSignalEvent writes its connection id there (see Program).
const DoorbellPort = 0x88

// ErrStopped: the machine has stopped; it cannot be paused or resumed.
var ErrStopped = errors.New("the partition has stopped")

// Gate is a machine's run state, shared by its processor threads: each
// passes it before it runs guest code (Enter) and says when it is done
// with an exit (Leave). While the machine is paused, Enter waits; Pause
// returns once no thread is between Enter and Leave. Stop ends the
// machine: Enter reports false from then on, and every registered
// processor is kicked.
//
// A Generation 1 processor thread stays inside from Enter until it has
// handled the exit (its device accesses finish before a pause holds); a
// Generation 2 thread leaves as soon as Run returns, so that a thread
// blocked in a system call does not hold a pause up.
type Gate struct {
	mu      sync.Mutex
	cond    sync.Cond
	paused  bool           // guarded by mu
	inside  int            // threads between Enter and Leave; guarded by mu
	kickers map[Kicker]int // registered processors (with a count, for re-adds); guarded by mu
	stopped chan struct{}  // closed by Stop
	once    sync.Once
}

// NewGate returns a running, unpaused gate.
func NewGate() *Gate {
	g := &Gate{kickers: map[Kicker]int{}, stopped: make(chan struct{})}
	g.cond.L = &g.mu
	return g
}

// Add registers a processor for Pause and Stop to kick; one added after
// Stop is kicked at once.
func (g *Gate) Add(k Kicker) {
	g.mu.Lock()
	g.kickers[k]++
	g.mu.Unlock()
	if g.IsStopped() {
		k.Kick()
	}
}

// Remove forgets a processor.
func (g *Gate) Remove(k Kicker) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.kickers[k]--; g.kickers[k] <= 0 {
		delete(g.kickers, k)
	}
}

// Enter waits while the machine is paused and counts the caller inside;
// false (not counted) once the machine has stopped.
func (g *Gate) Enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.paused && !g.IsStopped() {
		g.cond.Wait()
	}
	if g.IsStopped() {
		return false
	}
	g.inside++
	return true
}

// Leave undoes a successful Enter.
func (g *Gate) Leave() {
	g.mu.Lock()
	g.inside--
	g.cond.Broadcast()
	g.mu.Unlock()
}

// Pause stops processors from entering guest code and returns once none
// is inside (at once if none runs). A Resume that overtakes it ends the
// wait. After a stop, or if the machine stops while it waits, it returns
// ErrStopped.
func (g *Gate) Pause() error {
	g.mu.Lock()
	if g.IsStopped() {
		g.mu.Unlock()
		return ErrStopped
	}
	g.paused = true
	g.mu.Unlock()
	// The flag is set before the kicks and every thread looks at it in
	// Enter, so a kick that lands between two runs costs nothing.
	g.kickAll()
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.paused && g.inside > 0 && !g.IsStopped() {
		g.cond.Wait()
	}
	if g.IsStopped() {
		return ErrStopped
	}
	return nil
}

// Resume lets processors enter guest code again; after a stop it returns
// ErrStopped.
func (g *Gate) Resume() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.IsStopped() {
		return ErrStopped
	}
	g.paused = false
	g.cond.Broadcast()
	return nil
}

// Paused reports whether Pause was called and Resume has not been since.
func (g *Gate) Paused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// Stop ends the machine: waiting Enter and Pause calls return, and every
// processor is kicked. It reports whether this call stopped it (the first
// one does).
func (g *Gate) Stop() bool {
	first := false
	g.once.Do(func() {
		first = true
		close(g.stopped)
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
		g.kickAll()
	})
	return first
}

// Stopped is closed once Stop has run.
func (g *Gate) Stopped() <-chan struct{} { return g.stopped }

// IsStopped reports whether Stop has run.
func (g *Gate) IsStopped() bool {
	select {
	case <-g.stopped:
		return true
	default:
		return false
	}
}

func (g *Gate) kickAll() {
	g.mu.Lock()
	ks := make([]Kicker, 0, len(g.kickers))
	for k := range g.kickers {
		ks = append(ks, k)
	}
	g.mu.Unlock()
	for _, k := range ks {
		k.Kick()
	}
}
