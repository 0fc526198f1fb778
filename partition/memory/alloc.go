package memory

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// ErrNoSpace: the allocator has no free run of the requested length.
var ErrNoSpace = errors.New("memory: no free guest pages")

// PageAllocator hands out page-aligned runs of guest pages from
// [base, limit): the guest side uses it to place rings and buffers. First
// fit over a sorted free list; safe for concurrent use.
type PageAllocator struct {
	mu   sync.Mutex
	free []run // sorted by start, never adjacent; guarded by mu
	base uint64
	end  uint64
}

type run struct{ start, pages uint64 }

// NewPageAllocator manages pages [base, limit), both page aligned.
func NewPageAllocator(base, limit uint64) (*PageAllocator, error) {
	if base%PageSize != 0 || limit%PageSize != 0 || limit <= base {
		return nil, fmt.Errorf("%w: allocator range %#x..%#x", ErrUnaligned, base, limit)
	}
	return &PageAllocator{base: base, end: limit, free: []run{{base, (limit - base) / PageSize}}}, nil
}

// Alloc returns the guest physical address of pages free pages.
func (a *PageAllocator) Alloc(pages int) (uint64, error) {
	if pages <= 0 {
		return 0, fmt.Errorf("%w: %d pages", ErrNoSpace, pages)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, r := range a.free {
		if r.pages >= uint64(pages) {
			gpa := r.start
			a.free[i] = run{r.start + uint64(pages)*PageSize, r.pages - uint64(pages)}
			if a.free[i].pages == 0 {
				a.free = append(a.free[:i], a.free[i+1:]...)
			}
			return gpa, nil
		}
	}
	return 0, fmt.Errorf("%w: %d pages", ErrNoSpace, pages)
}

// Free returns pages allocated by Alloc. Freeing a range that is partly
// free or outside the allocator is an error and changes nothing.
func (a *PageAllocator) Free(gpa uint64, pages int) error {
	end := gpa + uint64(pages)*PageSize
	if pages <= 0 || gpa%PageSize != 0 || gpa < a.base || end > a.end || end < gpa {
		return fmt.Errorf("%w: free %#x+%d pages", ErrOutOfRange, gpa, pages)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i := sort.Search(len(a.free), func(i int) bool { return a.free[i].start >= gpa })
	if i < len(a.free) && a.free[i].start < end {
		return fmt.Errorf("%w: double free of %#x", ErrOutOfRange, gpa)
	}
	if i > 0 && a.free[i-1].start+a.free[i-1].pages*PageSize > gpa {
		return fmt.Errorf("%w: double free of %#x", ErrOutOfRange, gpa)
	}
	a.free = append(a.free, run{})
	copy(a.free[i+1:], a.free[i:])
	a.free[i] = run{gpa, uint64(pages)}
	// Merge with neighbours.
	if i+1 < len(a.free) && a.free[i].start+a.free[i].pages*PageSize == a.free[i+1].start {
		a.free[i].pages += a.free[i+1].pages
		a.free = append(a.free[:i+1], a.free[i+2:]...)
	}
	if i > 0 && a.free[i-1].start+a.free[i-1].pages*PageSize == a.free[i].start {
		a.free[i-1].pages += a.free[i].pages
		a.free = append(a.free[:i], a.free[i+1:]...)
	}
	return nil
}
