package guestmem

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// MaxWindowPages bounds one MapPages call: 1 GiB of address space.
const MaxWindowPages = 1 << 18

// MaxMappedRuns bounds the runs of consecutive guest pages that all open
// Windows in this process hold together. Each run is one kernel mapping
// (VMA), and the kernel's per-process limit (vm.max_map_count, 65530 by
// default) is shared with the Go runtime, whose heap growth and thread
// stacks fail fatally once it is reached. Half the default limit keeps
// hostile page lists (every page on its own) well away from it.
const MaxMappedRuns = 1 << 15

// ErrTooManyMappings: opening the window would take this process's
// Windows past MaxMappedRuns runs.
var ErrTooManyMappings = errors.New("memory: too many window mappings in this process")

var (
	// mappedRuns counts the runs held by open Windows in this process.
	mappedRuns atomic.Int64
	// runsLimit is MaxMappedRuns; tests lower it (never while windows are
	// being mapped concurrently).
	runsLimit int64 = MaxMappedRuns
)

// Window is a contiguous view of guest pages that may be scattered in
// guest physical memory: page i of the window is guest page pfns[i] of the
// MapPages call. It is a shared mapping of the memfd, so reads and writes
// go straight to guest memory and see every change made through any other
// mapping, in this process or another.
//
// A Window holds its own mapping and stays valid after the Memory it came
// from is closed. Bytes may be used from many goroutines; Close must not
// run while any of them still uses the bytes.
type Window struct {
	b    []byte // the mapping; nil after Close
	runs int    // kernel mappings counted in mappedRuns

	once sync.Once
	err  error // written once, inside once
}

// pageRun is a run of consecutive guest pages mapped at window page index.
type pageRun struct {
	index int    // first window page
	pfn   uint64 // first guest page
	pages int
}

// pageRuns splits pfns into maximal runs of consecutive page numbers, in
// window order: one mmap call each.
func pageRuns(pfns []uint64) []pageRun {
	var runs []pageRun
	for i := 0; i < len(pfns); {
		j := i + 1
		for j < len(pfns) && pfns[j-1] != ^uint64(0) && pfns[j] == pfns[j-1]+1 {
			j++
		}
		runs = append(runs, pageRun{index: i, pfn: pfns[i], pages: j - i})
		i = j
	}
	return runs
}

// MapPages returns a Window onto the given guest pages, in order, at
// consecutive virtual addresses, so a ring or buffer the guest scattered
// over physical memory reads as one slice. It reserves the window's
// address space with PROT_NONE, then maps each run of consecutive PFNs
// from the memfd over it with MAP_FIXED: one mmap call per run.
//
// The list is hostile: every PFN is checked before anything is mapped, the
// list must hold 1..MaxWindowPages entries, and its runs count against
// MaxMappedRuns. A PFN may appear more than once; its window pages then
// alias each other.
func (m *Memory) MapPages(pfns []uint64) (*Window, error) {
	if n := len(pfns); n == 0 || n > MaxWindowPages {
		return nil, fmt.Errorf("%w: window of %d pages, want 1..%d", ErrInvalidSize, n, MaxWindowPages)
	}
	for i, pfn := range pfns {
		if err := m.CheckPFN(pfn); err != nil {
			return nil, fmt.Errorf("window page %d: %w", i, err)
		}
	}
	runs := pageRuns(pfns)
	n := int64(len(runs))
	if total := mappedRuns.Add(n); total > runsLimit {
		mappedRuns.Add(-n)
		return nil, fmt.Errorf("%w: window of %d pages in %d runs, %d runs already mapped, limit %d",
			ErrTooManyMappings, len(pfns), n, total-n, runsLimit)
	}
	var b []byte
	err := withFD(m.f, func(fd int) error {
		var err error
		b, err = mapWindow(fd, len(pfns), runs)
		return err
	})
	if err != nil {
		mappedRuns.Add(-n)
		return nil, fmt.Errorf("memory: map window of %d pages: %w", len(pfns), err)
	}
	return &Window{b: b, runs: len(runs)}, nil
}

// Bytes is the window: PageSize bytes per page given to MapPages. It is
// nil after Close.
func (w *Window) Bytes() []byte { return w.b }

// Close unmaps the window. It is idempotent: later calls return the first
// call's result.
func (w *Window) Close() error {
	w.once.Do(func() {
		w.err = unmapWindow(w.b)
		mappedRuns.Add(-int64(w.runs))
		w.b = nil
	})
	return w.err
}
