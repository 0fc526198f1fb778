package guestmem

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Allocator errors.
var (
	// ErrNoSpace: no free run of the requested length.
	ErrNoSpace = errors.New("memory: no free guest pages")
	// ErrNotAllocated: Free of a run that Alloc did not hand out as such
	// (a double free, a foreign range, or part of an allocation).
	ErrNotAllocated = errors.New("memory: guest pages not allocated")
)

// PageAllocator hands out page-aligned runs of guest pages from
// [base, limit): the guest side uses it to place rings and buffers in
// guest memory. It is first fit over a sorted free list, and it remembers
// every live allocation, so Free takes back exactly what Alloc handed out
// and refuses anything else. It is safe for concurrent use.
type PageAllocator struct {
	base, limit uint64 // immutable

	mu   sync.Mutex
	free []span         // guarded by mu; sorted by start, disjoint, never adjacent
	used map[uint64]int // guarded by mu; start of each live allocation → pages
}

// span is a run of pages starting at guest physical address start.
type span struct {
	start uint64
	pages uint64
}

func (s span) end() uint64 { return s.start + s.pages*PageSize }

// NewPageAllocator manages the pages [base, limit); both are page aligned
// and limit > base.
func NewPageAllocator(base, limit uint64) (*PageAllocator, error) {
	if base%PageSize != 0 || limit%PageSize != 0 {
		return nil, fmt.Errorf("%w: allocator range %#x..%#x", ErrUnaligned, base, limit)
	}
	if limit <= base {
		return nil, fmt.Errorf("%w: allocator range %#x..%#x is empty", ErrInvalidSize, base, limit)
	}
	return &PageAllocator{
		base:  base,
		limit: limit,
		free:  []span{{base, (limit - base) / PageSize}},
		used:  make(map[uint64]int),
	}, nil
}

// Alloc returns the guest physical address of a run of pages free pages,
// the lowest that fits.
func (a *PageAllocator) Alloc(pages int) (gpa uint64, err error) {
	if pages <= 0 {
		return 0, fmt.Errorf("%w: alloc of %d pages", ErrInvalidSize, pages)
	}
	n := uint64(pages)
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, s := range a.free {
		if s.pages < n {
			continue
		}
		if s.pages == n {
			a.free = append(a.free[:i], a.free[i+1:]...)
		} else {
			a.free[i] = span{s.start + n*PageSize, s.pages - n}
		}
		a.used[s.start] = pages
		return s.start, nil
	}
	return 0, fmt.Errorf("%w: %d pages in %#x..%#x", ErrNoSpace, pages, a.base, a.limit)
}

// Free returns a run that Alloc handed out: gpa and pages must be exactly
// what Alloc returned and was asked for. Anything else (a double free, a
// range never allocated, part of an allocation) is an error that changes
// nothing.
func (a *PageAllocator) Free(gpa uint64, pages int) error {
	if pages <= 0 {
		return fmt.Errorf("%w: free of %d pages at %#x", ErrInvalidSize, pages, gpa)
	}
	if gpa%PageSize != 0 {
		return fmt.Errorf("%w: free of %d pages at %#x", ErrUnaligned, pages, gpa)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	got, ok := a.used[gpa]
	if !ok {
		return fmt.Errorf("%w: free of %d pages at %#x (double free or foreign range)", ErrNotAllocated, pages, gpa)
	}
	if got != pages {
		return fmt.Errorf("%w: free of %d pages at %#x, allocated %d", ErrNotAllocated, pages, gpa, got)
	}
	delete(a.used, gpa)
	a.insertLocked(span{gpa, uint64(pages)})
	return nil
}

// insertLocked puts s, which overlaps no free span, into the free list,
// merging it with its neighbours.
func (a *PageAllocator) insertLocked(s span) {
	i := sort.Search(len(a.free), func(i int) bool { return a.free[i].start > s.start })
	mergePrev := i > 0 && a.free[i-1].end() == s.start
	mergeNext := i < len(a.free) && s.end() == a.free[i].start
	switch {
	case mergePrev && mergeNext:
		a.free[i-1].pages += s.pages + a.free[i].pages
		a.free = append(a.free[:i], a.free[i+1:]...)
	case mergePrev:
		a.free[i-1].pages += s.pages
	case mergeNext:
		a.free[i] = span{s.start, s.pages + a.free[i].pages}
	default:
		a.free = append(a.free, span{})
		copy(a.free[i+1:], a.free[i:])
		a.free[i] = s
	}
}
