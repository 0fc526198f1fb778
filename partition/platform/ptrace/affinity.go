package ptrace

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A trapped system call wakes the tracer, and its answer wakes the
// tracee: on these machines that costs about 30 µs when the two are on
// different CPUs and about 17 µs when they share one (the C loop of
// testdata/sysemu.c, under taskset and without). They never run at once,
// so each program thread and its tracer are pinned to one CPU together;
// threads take the worker's CPUs in turn, from a start that differs per
// worker, so that partitions spread.

// nextCPU is the turn of the next thread, over the worker's allowed CPUs.
var nextCPU atomic.Uint32

func init() { nextCPU.Store(uint32(unix.Getpid())) }

// pin puts the calling OS thread and stub thread tid on one CPU and
// returns the caller's former mask, for unpin. A failure only costs
// speed: the threads stay where the scheduler puts them.
func pin(tid int) (old *unix.CPUSet) {
	var mask unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mask); err != nil {
		return nil
	}
	n := mask.Count()
	if n < 2 {
		return nil
	}
	turn := int(nextCPU.Add(1)) % n
	cpu := -1
	for i := 0; i < 1024 && cpu < 0; i++ {
		if mask.IsSet(i) {
			if turn == 0 {
				cpu = i
			}
			turn--
		}
	}
	if cpu < 0 {
		return nil
	}
	var one unix.CPUSet
	one.Set(cpu)
	if unix.SchedSetaffinity(0, &one) != nil {
		return nil
	}
	if unix.SchedSetaffinity(tid, &one) != nil {
		unix.SchedSetaffinity(0, &mask)
		return nil
	}
	return &mask
}

// unpin gives the calling OS thread its former mask back, before it goes
// back to the runtime's pool.
func unpin(old *unix.CPUSet) {
	if old != nil {
		unix.SchedSetaffinity(0, old)
	}
}
