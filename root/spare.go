package root

import (
	"fmt"
	"time"

	"github.com/partita-hv/partita/partition/control"
)

// The root keeps one spare worker process: started, its Go runtime up,
// its platforms opened and its PC made (see gen1.Prepare), waiting for a
// partition. A start
// takes the spare and a new one is launched behind it, so a start does not
// wait for a process to exec nor for the kernel's first-memory-slot cost.
// A spare is named "(spare)" in ps until it gets its partition's name.

// spareLabel is a spare's --partition value: a placeholder padded to the
// longest name, for the worker to write the name over.
var spareLabel = control.SpareLabel()

// takeWorker returns the spare if it is alive, or launches a worker, and
// launches the next spare.
func (s *Service) takeWorker() (*worker, error) {
	s.mu.Lock()
	w := s.spare
	s.spare = nil
	s.mu.Unlock()
	go s.refillSpare()
	if w != nil {
		s.removePID(spareID(w))
		if w.alive() {
			return w, nil
		}
		s.log.Warn("the spare worker had died; launching one", "reason", w.exit.reason)
	}
	return launchWorker(s.cfg.WorkerPath, spareLabel, s.cfg.Accel, s.log.Named("spare"))
}

func spareID(w *worker) string { return fmt.Sprintf("spare-%d", w.pid()) }

// refillSpare launches a spare unless there is one, one is being
// launched, or the service is closing.
func (s *Service) refillSpare() {
	s.mu.Lock()
	if s.closed || s.spare != nil || s.spareLaunching || s.cfg.NoSpare {
		s.mu.Unlock()
		return
	}
	s.spareLaunching = true
	s.mu.Unlock()
	w, err := launchWorker(s.cfg.WorkerPath, spareLabel, s.cfg.Accel, s.log.Named("spare"))
	s.mu.Lock()
	s.spareLaunching = false
	if err != nil {
		s.mu.Unlock()
		s.log.Error("cannot launch a spare worker", "error", err)
		return
	}
	if s.closed {
		s.mu.Unlock()
		w.dismiss()
		return
	}
	s.spare = w
	s.mu.Unlock()
	s.writePID(spareID(w), w.pid())
}

// dropSpare ends the spare, if any (when the service closes).
func (s *Service) dropSpare() {
	s.mu.Lock()
	w := s.spare
	s.spare = nil
	s.mu.Unlock()
	if w != nil {
		w.dismiss()
		s.removePID(spareID(w))
	}
}

// dismiss ends a worker that has no partition: closing its control
// socket makes it exit; one that does not within a second is killed.
func (w *worker) dismiss() {
	w.conn.Close()
	select {
	case <-w.done:
	case <-time.After(time.Second):
		w.kill()
		<-w.done
	}
}
