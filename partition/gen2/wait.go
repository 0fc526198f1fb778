package gen2

import (
	"time"

	"golang.org/x/sys/unix"
)

// Waits on behalf of the program (nanosleep, futex and epoll timeouts,
// the SynIC wait).
//
// Go's timers sleep at least about a millisecond on these machines: the
// runtime waits for them in its netpoller, whose epoll timeout counts
// whole milliseconds (time.After(20 µs) takes a median 1.1 ms). A Go
// program's runtime sleeps for tens of microseconds all the time (sysmon,
// spinning threads, short futex timeouts), so a program-wide 1 ms floor
// on those sleeps slows it badly. Waits shorter than shortWait therefore
// run on the waiting vCPU's own thread (runThread locks it): nanosleep in
// steps of at most pollStep, looking between steps at what would end the
// wait early. The thread's timer slack is set to 1 µs (vcpuThread).
const (
	shortWait = 2 * time.Millisecond
	pollStep  = 20 * time.Microsecond
	forever   = time.Duration(-1)
)

// waitFor waits until a or b is ready (closed, or sent on) or d has
// passed (never when d is forever), and says which: 0, 1, or -1 for the
// time. Nil channels are never ready.
func waitFor(d time.Duration, a, b <-chan struct{}) int {
	if d < 0 {
		select {
		case <-a:
			return 0
		case <-b:
			return 1
		}
	}
	if d >= shortWait {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-a:
			return 0
		case <-b:
			return 1
		case <-t.C:
			return -1
		}
	}
	deadline := time.Now().Add(d)
	for {
		select {
		case <-a:
			return 0
		case <-b:
			return 1
		default:
		}
		rem := time.Until(deadline)
		if rem <= 0 {
			return -1
		}
		ts := unix.NsecToTimespec(int64(min(rem, pollStep)))
		unix.Nanosleep(&ts, nil)
	}
}

// vcpuThread prepares the OS thread a vCPU runs on (already locked to
// its goroutine) for short waits: a timer slack of 1 µs rather than the
// default 50 µs.
func vcpuThread() {
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
}
