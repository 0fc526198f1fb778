package root

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/partition/control"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// partition is the root's record of one partition: its definition and its
// runtime state. Fields after mu are guarded by the service's mutex s.mu;
// one state change (a job) at a time runs per partition.
type partition struct {
	def     *Definition
	log     hclog.Logger
	console *Console

	state      uint16 // EnabledState
	requested  uint16 // RequestedState
	health     uint16
	lastReason string
	platform   string    // what its worker last ran it on
	changed    time.Time // TimeOfLastStateChange
	onSince    time.Time // when it last started running
	worker     *worker
	job        *job        // the state change in flight, if any
	expectStop bool        // the root asked the worker to stop
	resets     []time.Time // recent guest resets, for the reset-loop limit
	destroyed  bool
}

// A guest that resets more than maxResets times within resetWindow is
// left off instead of being started again (a reset loop).
const (
	maxResets   = 5
	resetWindow = time.Minute
)

// resetsAllowed records a reset at now and reports whether the partition
// may start again; the caller holds s.mu.
func (p *partition) resetsAllowed(now time.Time) bool {
	recent := p.resets[:0]
	for _, t := range p.resets {
		if now.Sub(t) < resetWindow {
			recent = append(recent, t)
		}
	}
	p.resets = append(recent, now)
	return len(p.resets) <= maxResets
}

// Timeouts for the root's requests to a worker.
const (
	startTimeout   = 30 * time.Second
	requestTimeout = 10 * time.Second
	stopTimeout    = 10 * time.Second
)

var (
	statusOK     = []uint16{wmiapi.OperationalOK}
	statusOKText = []string{"Operating normally"}
)

// computerSystem renders p, which runs (or would run) on platform; the
// caller holds s.mu.
func (p *partition) computerSystem(now time.Time, platform string) wmiapi.ComputerSystem {
	cs := wmiapi.ComputerSystem{
		ElementName:           p.def.Name,
		Name:                  p.def.ID,
		EnabledState:          p.state,
		RequestedState:        p.requested,
		HealthState:           p.health,
		TimeOfLastStateChange: p.changed,
		InstallDate:           p.def.Created,
		Generation:            p.def.Generation,
		MemoryMB:              p.def.MemoryMB,
		Processors:            p.def.Processors,
		LastStopReason:        p.lastReason,
		Platform:              platform,
	}
	if p.health != wmiapi.HealthOK {
		cs.OperationalStatus = []uint16{wmiapi.OperationalDegraded}
		cs.StatusDescriptions = []string{p.lastReason}
	} else {
		// Shared, never modified: the common case costs no allocation.
		cs.OperationalStatus, cs.StatusDescriptions = statusOK, statusOKText
	}
	if p.worker != nil {
		cs.ProcessID = p.worker.pid()
	}
	if !p.onSince.IsZero() && p.state != wmiapi.StateOff {
		cs.OnTimeInMilliseconds = uint64(now.Sub(p.onSince).Milliseconds())
	}
	return cs
}

// setState records a state change; the caller holds s.mu.
func (s *Service) setState(p *partition, state uint16) {
	if p.state != state {
		p.log.Info("state", "from", stateName(p.state), "to", stateName(state))
	}
	p.state = state
	p.changed = time.Now()
}

// stateName names an EnabledState for logs and metrics.
func stateName(st uint16) string {
	switch st {
	case wmiapi.StateRunning:
		return "running"
	case wmiapi.StateOff:
		return "off"
	case wmiapi.StateShuttingDown:
		return "shutting_down"
	case wmiapi.StateSaved:
		return "saved"
	case wmiapi.StatePaused:
		return "paused"
	case wmiapi.StateStarting:
		return "starting"
	case wmiapi.StateStopping:
		return "stopping"
	case wmiapi.StatePausing:
		return "pausing"
	case wmiapi.StateResuming:
		return "resuming"
	}
	return "unknown"
}

// plan is what a state change does: the transitional state shown while it
// runs, and the work.
type plan struct {
	transitional uint16
	run          func(ctx context.Context) error
}

// planChange checks a requested state against the current one; the caller
// holds s.mu.
func (s *Service) planChange(p *partition, req uint16) (plan, error) {
	st := p.state
	bad := func() (plan, error) {
		return plan{}, fault(wmiapi.CodeInvalidState, "partition %s is %s: cannot change to requested state %d", p.def.Name, stateName(st), req)
	}
	switch req {
	case wmiapi.RequestRunning:
		switch st {
		case wmiapi.StateOff:
			if err := s.admit(p); err != nil {
				return plan{}, err
			}
			return plan{wmiapi.StateStarting, func(ctx context.Context) error { return s.start(ctx, p) }}, nil
		case wmiapi.StatePaused:
			return plan{wmiapi.StateResuming, func(ctx context.Context) error { return s.simple(ctx, p, control.TypeResume, wmiapi.StateRunning) }}, nil
		}
	case wmiapi.RequestOff:
		if st == wmiapi.StateRunning || st == wmiapi.StatePaused {
			return plan{wmiapi.StateStopping, func(ctx context.Context) error { return s.turnOff(ctx, p) }}, nil
		}
	case wmiapi.RequestShutDown:
		if st == wmiapi.StateRunning {
			return plan{wmiapi.StateShuttingDown, func(ctx context.Context) error { return s.shutDown(ctx, p) }}, nil
		}
	case wmiapi.RequestPaused:
		if st == wmiapi.StateRunning {
			return plan{wmiapi.StatePausing, func(ctx context.Context) error { return s.simple(ctx, p, control.TypePause, wmiapi.StatePaused) }}, nil
		}
	case wmiapi.RequestReboot, wmiapi.RequestReset:
		if st == wmiapi.StateRunning || st == wmiapi.StatePaused {
			if err := s.admit(p); err != nil {
				return plan{}, err
			}
			return plan{wmiapi.StateStopping, func(ctx context.Context) error {
				if err := s.turnOff(ctx, p); err != nil {
					return err
				}
				return s.start(ctx, p)
			}}, nil
		}
	case wmiapi.RequestSaved:
		return plan{}, fault(wmiapi.CodeNotSupported, "saving a partition's state is not implemented")
	default:
		return plan{}, invalid("RequestedState %d: want 2 (running), 3 (off), 4 (shut down), 9 (paused), 10 (reboot) or 11 (reset)", req)
	}
	return bad()
}

// admit checks that p can start now; the caller holds s.mu. A
// Generation 2 partition without a GuestFile needs the default guest
// (hvguest) to exist, and a disk image runs in one partition at a time
// (two writers would corrupt it).
func (s *Service) admit(p *partition) error {
	if p.def.Generation == 2 && p.def.Guest == "" {
		if err := checkFile("the default guest", s.cfg.DefaultGuest); err != nil {
			return fault(wmiapi.CodeNotSupported, "partition %s is Generation 2 without a GuestFile, and %v (build cmd/hvguest beside vmms)", p.def.Name, err)
		}
	}
	for _, o := range s.byID {
		if o == p || o.state == wmiapi.StateOff {
			continue
		}
		for _, d := range p.def.Disks {
			for _, od := range o.def.Disks {
				if d.Path == od.Path {
					return fault(wmiapi.CodeConflict, "disk %s is in use by partition %s", d.Path, o.def.Name)
				}
			}
		}
	}
	return nil
}

// start spawns the worker and waits for it to run the partition.
func (s *Service) start(ctx context.Context, p *partition) error {
	s.mu.Lock()
	def := p.def.clone()
	if def.Generation == 2 && def.Guest == "" {
		def.Guest = s.cfg.DefaultGuest
	}
	s.setState(p, wmiapi.StateStarting) // a reboot's second half comes here from Off
	s.mu.Unlock()
	s.metrics.workerStarts.Inc()
	p.console.setLive(true)
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	w, err := s.takeWorker()
	if err == nil {
		w.assign(p.log, &countingWriter{w: p.console, n: s.metrics.consoleOut.WithLabelValues(def.Name)})
		s.writePID(def.ID, w.pid())
		err = w.start(ctx, def, busConfig{hostItems: func() map[string]string { return s.hostItems(p) }, poll: s.vmbusPoll()})
	}
	if err != nil {
		p.console.setLive(false)
		s.removePID(def.ID)
		s.metrics.workerExits.WithLabelValues("start_failed").Inc()
		s.mu.Lock()
		s.setState(p, wmiapi.StateOff)
		p.lastReason = "start failed: " + err.Error()
		p.health = wmiapi.HealthMajorFailure
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	p.platform = w.platform
	p.worker = w
	p.expectStop = false
	p.health = wmiapi.HealthOK
	p.lastReason = ""
	p.onSince = time.Now()
	s.setState(p, wmiapi.StateRunning)
	s.mu.Unlock()
	go s.watch(p, w)
	return nil
}

// watch waits for a worker to end and moves its partition to Off with the
// reason; a worker that died without reporting is a crash.
func (s *Service) watch(p *partition, w *worker) {
	<-w.done
	p.console.setLive(false)
	s.removePID(p.def.ID)
	ex := w.exit
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.worker != w {
		return
	}
	p.worker = nil
	restart := false
	kind := "stopped"
	switch {
	case ex.crash:
		kind = "crashed"
		p.health = wmiapi.HealthCriticalFailure
		s.metrics.workerCrashes.Inc()
		p.log.Error("worker died", "reason", ex.reason)
	case ex.stopped.PowerOff:
		kind = "powered_off"
		p.health = wmiapi.HealthOK
	case ex.stopped.Reset && !p.expectStop:
		kind = "guest_reset"
		p.health = wmiapi.HealthOK
		restart = p.job == nil && p.resetsAllowed(time.Now())
		if !restart && p.job == nil {
			ex.reason += fmt.Sprintf("; left off after %d resets within %v", maxResets, resetWindow)
			p.health = wmiapi.HealthMajorFailure
		}
	case p.expectStop:
		kind = "turned_off"
		p.health = wmiapi.HealthOK
	default:
		kind = "guest_failure"
		p.health = wmiapi.HealthMajorFailure
		p.log.Warn("partition stopped", "reason", ex.reason)
	}
	s.metrics.workerExits.WithLabelValues(kind).Inc()
	p.lastReason = ex.reason
	p.onSince = time.Time{}
	if p.job == nil || p.state == wmiapi.StateRunning || p.state == wmiapi.StatePaused {
		p.requested = wmiapi.RequestNoChange
	}
	s.setState(p, wmiapi.StateOff)
	p.log.Info("partition off", "reason", ex.reason, "worker_exit", fmt.Sprint(ex.err))
	s.cond.Broadcast()
	if restart {
		// A reset is a power cycle: start the partition again, as a job
		// anyone can follow (once watch has released s.mu).
		go func() {
			if _, err := s.RequestStateChange(p.def.ID, wmiapi.RequestRunning); err != nil {
				p.log.Warn("restart after the guest's reset refused", "error", err)
			}
		}()
	}
}

// current returns p's worker, or an error if it has none; the caller does
// not hold s.mu.
func (s *Service) current(p *partition) (*worker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.worker == nil {
		return nil, fmt.Errorf("partition %s is not running", p.def.Name)
	}
	return p.worker, nil
}

// simple sends one request (pause, resume) and moves to state.
func (s *Service) simple(ctx context.Context, p *partition, typ string, to uint16) error {
	w, err := s.current(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := w.request(ctx, &control.Message{Type: typ}); err != nil {
		s.mu.Lock()
		if p.worker == w {
			s.setState(p, from(to))
		}
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	if p.worker == w {
		s.setState(p, to)
	}
	s.mu.Unlock()
	return nil
}

// from is the state a failed pause or resume falls back to.
func from(to uint16) uint16 {
	if to == wmiapi.StatePaused {
		return wmiapi.StateRunning
	}
	return wmiapi.StatePaused
}

// turnOff stops the partition now, like pulling the plug (the worker still
// flushes the disks); a worker that does not stop in time is killed.
func (s *Service) turnOff(ctx context.Context, p *partition) error {
	w, err := s.current(p)
	if err != nil {
		return nil // already off: it stopped on its own meanwhile
	}
	s.mu.Lock()
	p.expectStop = true
	s.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	if _, err := w.request(rctx, &control.Message{Type: control.TypeTurnOff}); err != nil && !errors.Is(err, errWorkerGone) {
		p.log.Warn("turn-off request failed; killing the worker", "error", err)
		w.kill()
	}
	select {
	case <-w.done:
	case <-rctx.Done():
		p.log.Warn("worker did not stop in time; killing it")
		w.kill()
		<-w.done
	}
	s.waitOff(p, w)
	return nil
}

// waitOff waits until watch has recorded w's end.
func (s *Service) waitOff(p *partition, w *worker) {
	s.mu.Lock()
	for p.worker == w {
		s.cond.Wait()
	}
	s.mu.Unlock()
}

// shutDown asks the guest to shut down (Generation 1: the ACPI power
// button; Generation 2: the shutdown integration service) and waits for
// it to power off.
func (s *Service) shutDown(ctx context.Context, p *partition) error {
	w, err := s.current(p)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if w.bus != nil {
		err = w.bus.shutdown(rctx, false, "shut down by the root (RequestStateChange)")
	} else {
		_, err = w.request(rctx, &control.Message{Type: control.TypePowerButton})
	}
	if err != nil {
		s.mu.Lock()
		if p.worker == w {
			s.setState(p, wmiapi.StateRunning)
		}
		s.mu.Unlock()
		return fmt.Errorf("shut down: %w", err)
	}
	select {
	case <-w.done:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.mu.Lock()
		if p.worker == w {
			s.setState(p, wmiapi.StateRunning)
		}
		s.mu.Unlock()
		return fmt.Errorf("the guest did not power off within %s of the power button; it is still running", s.cfg.ShutdownTimeout)
	case <-ctx.Done():
		s.mu.Lock()
		if p.worker == w {
			s.setState(p, wmiapi.StateRunning)
		}
		s.mu.Unlock()
		return ctx.Err()
	}
	s.waitOff(p, w)
	return nil
}
