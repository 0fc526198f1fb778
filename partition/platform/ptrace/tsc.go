package ptrace

import (
	"sync"
	"time"
)

// The program reads the host's time-stamp counter itself (RDTSC runs
// natively in the stub), so the vDSO's clock needs the host TSC's rate.
// Linux does not publish it to user space, so the platform measures it
// against the host's monotonic clock: it samples both when the platform
// is first opened (a spare worker does so long before its partition
// starts) and again when the first program asks, at least calibrationMin
// later. Over a longer span the rate is closer: the error is about the
// two samples' jitter (well under a microsecond) over the span.

// rdtsc reads the time-stamp counter (tsc_amd64.s).
func rdtsc() uint64

const calibrationMin = 20 * time.Millisecond

var (
	calMu    sync.Mutex
	calStart struct {
		tsc uint64
		at  time.Time
	}
	calKHz uint64 // the rate, once measured; guarded by calMu
)

// startCalibration takes the first sample (once).
func startCalibration() {
	calMu.Lock()
	defer calMu.Unlock()
	if calStart.tsc == 0 {
		calStart.tsc, calStart.at = sample()
	}
}

// sample reads the counter and the clock as close together as it can:
// the read with the shortest span between two counter reads wins.
func sample() (uint64, time.Time) {
	var best uint64 = 1 << 63
	var tsc uint64
	var at time.Time
	for i := 0; i < 5; i++ {
		a := rdtsc()
		now := time.Now()
		b := rdtsc()
		if b-a < best {
			best, tsc, at = b-a, a+(b-a)/2, now
		}
	}
	return tsc, at
}

// tscKHz returns the TSC's rate in kHz, measuring it the first time.
func tscKHz() uint64 {
	startCalibration()
	calMu.Lock()
	defer calMu.Unlock()
	if calKHz == 0 {
		if d := calibrationMin - time.Since(calStart.at); d > 0 {
			time.Sleep(d)
		}
		tsc, at := sample()
		ns := at.Sub(calStart.at).Nanoseconds()
		calKHz = uint64(float64(tsc-calStart.tsc) * 1e6 / float64(ns))
	}
	return calKHz
}
