package gen2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/platform"
)

// The program's address space: virtual addresses of its own, backed on
// first touch by 4 KiB frames taken from the partition's memory above the
// kernel area. Reserving address space costs nothing (the Go runtime
// reserves far more than it uses); a page gets a frame when the program
// touches it (a #PF the worker serves) or when the worker reads or writes
// it for a system call.
//
// The page tables in guest memory are the map from the program's
// addresses to frames on every platform; each page the shim maps is
// also told to the platform (platform.Program.Map), which mirrors it
// where its processors do not walk those tables (ptrace).
//
// Frames are never taken back in this version: munmap forgets the range,
// but pages already backed keep their frames (and a later mapping of the
// same addresses sees their old contents), and mprotect does not restrict
// pages already mapped. Taking mappings away needs TLB shootdown across
// vCPUs (and unmapping in a ptrace stub), which this version does not do.

// Protection bits (mmap's).
const (
	protRead  = 1
	protWrite = 2
	protExec  = 4
)

// Virtual layout.
const (
	userTop   = 0x7FFFFFFFF000 // the stack ends here
	mmapBase  = 0x7F0000000000 // mappings without a hint are taken downwards from here
	userFloor = userBase       // nothing of the program's is mapped below: the kernel area
)

// vma is a range of the address space the program may use.
type vma struct {
	start, end uint64
	prot       uint32
	// pa, if not 0, is the frame behind start: the range maps frames
	// fixed in advance (the physical window), in order, rather than
	// frames taken on first touch.
	pa uint64
}

// part is the piece [start, end) of v, which holds it.
func (v vma) part(start, end uint64) vma {
	p := vma{start: start, end: end, prot: v.prot}
	if v.pa != 0 {
		p.pa = v.pa + (start - v.start)
	}
	return p
}

// joins reports whether w may follow v as one range.
func (v vma) joins(w vma) bool {
	return v.end == w.start && v.prot == w.prot && (v.pa == 0) == (w.pa == 0) && (v.pa == 0 || v.pa+(v.end-v.start) == w.pa)
}

// addressSpace is the program's: its ranges, page tables and frames.
type addressSpace struct {
	mem         []byte
	machine     platform.Program // told of every page mapped
	faultAround uint64           // the block a fault backs (the platform's choice)
	frames      *guestmem.PageAllocator
	used        uint64 // frames taken
	// fresh is the lowest frame never handed out: frames from there on
	// still hold the memfd's zeroes and need no clearing, which keeps a
	// large partition's memory sparse.
	fresh uint64
	vmas  []vma // sorted by start, disjoint
}

// freeFrames is how many frames are left.
func (as *addressSpace) freeFrames() uint64 {
	return (uint64(len(as.mem))-userBase)/4096 - as.used
}

func newAddressSpace(mem []byte, machine platform.Program) (*addressSpace, error) {
	frames, err := guestmem.NewPageAllocator(userBase, uint64(len(mem)))
	if err != nil {
		return nil, err
	}
	return &addressSpace{mem: mem, machine: machine, faultAround: max(machine.FaultAround(), 4096), frames: frames, fresh: userBase}, nil
}

var errNoMemory = errors.New("gen2: the partition's memory is used up")

// frame takes a zeroed frame.
func (as *addressSpace) frame() (uint64, error) {
	pa, err := as.frames.Alloc(1)
	if err != nil {
		return 0, errNoMemory
	}
	as.used++
	as.zero(pa, 1)
	return pa, nil
}

// zero clears frames taken from the allocator, but for those never
// handed out before.
func (as *addressSpace) zero(pa, pages uint64) {
	end := pa + pages*4096
	if pa < as.fresh {
		clear(as.mem[pa:min(end, as.fresh)])
	}
	as.fresh = max(as.fresh, end)
}

// pte returns the address of the page-table entry for va, creating the
// tables on the way when create is set (0 if absent).
func (as *addressSpace) pte(va uint64, create bool) (uint64, error) {
	le := binary.LittleEndian
	table := uint64(pml4Addr)
	for level, shift := 0, 39; level < 3; level, shift = level+1, shift-9 {
		e := table + 8*((va>>shift)&511)
		v := le.Uint64(as.mem[e:])
		if v&ptePresent == 0 {
			if !create {
				return 0, nil
			}
			pa, err := as.frame()
			if err != nil {
				return 0, err
			}
			v = pa | ptePresent | pteWrite | pteUser
			le.PutUint64(as.mem[e:], v)
		}
		if v&ptePS != 0 {
			return 0, fmt.Errorf("gen2: %#x is in a large page", va)
		}
		table = v & 0x000FFFFFFFFFF000
		if table+4096 > uint64(len(as.mem)) {
			// Only the worker writes page tables; this is a bug, not the
			// program's doing, but it must not take the worker down.
			return 0, fmt.Errorf("gen2: page table at %#x beyond memory", table)
		}
	}
	return table + 8*((va>>12)&511), nil
}

// translate returns the physical address backing va, backing it first if
// the program's ranges allow the access (write: a write access). Only
// the program's own pages translate: never the kernel area's.
func (as *addressSpace) translate(va uint64, write bool) (uint64, bool) {
	if va < userFloor || va >= userTop {
		return 0, false
	}
	e, err := as.pte(va, false)
	if err == nil && e != 0 {
		if v := binary.LittleEndian.Uint64(as.mem[e:]); v&ptePresent != 0 {
			pa, ok := as.frameOf(v)
			if !ok || v&pteUser == 0 {
				return 0, false
			}
			if !write || v&pteWrite != 0 {
				return pa | va&0xFFF, true
			}
			// A read-only page the range may now allow writing to.
		}
	}
	if as.back(va, write, false) != nil {
		return 0, false
	}
	return as.translate(va, write)
}

// errNoAccess: no range of the program's allows the access.
var errNoAccess = errors.New("gen2: no mapping allows the access")

// frameOf returns the frame a page-table entry names, if it is inside
// the partition's memory (only the worker writes page tables, but a bad
// entry must not take the worker down).
func (as *addressSpace) frameOf(pte uint64) (uint64, bool) {
	pa := pte & 0x000FFFFFFFFFF000
	return pa, pa >= userBase && pa+4096 <= uint64(len(as.mem))
}

// maxRanges bounds the program's address-space ranges (Linux's default
// vm.max_map_count).
const maxRanges = 65530

// back gives the page at va a frame if a range allows the access:
// errNoAccess if none does, errNoMemory if the partition's memory is used
// up.
func (as *addressSpace) back(va uint64, write, exec bool) error {
	v := as.find(va)
	if v == nil || write && v.prot&protWrite == 0 || exec && v.prot&protExec == 0 || !write && !exec && v.prot == 0 {
		return errNoAccess
	}
	if v.pa != 0 {
		// Fixed frames: map the block's pages to theirs.
		block := va &^ (as.faultAround - 1)
		for page := max(block, v.start); page < min(block+as.faultAround, v.end); page += 4096 {
			if err := as.setPTE(page, v.pa+(page-v.start), v.prot); err != nil {
				return err
			}
		}
		return nil
	}
	if err := as.mapPage(va&^0xFFF, v.prot); err != nil {
		return err
	}
	// Fault-around: back the rest of the aligned block inside the range
	// too, while frames are plentiful. Programs touch memory in runs, and
	// the platform sizes the block by what a fault costs it (KVM: 64 KiB,
	// about one exit's worth of zeroing).
	block := va &^ (as.faultAround - 1)
	for pa := max(block, v.start); pa < min(block+as.faultAround, v.end); pa += 4096 {
		if as.freeFrames() < reserveFrames {
			break
		}
		if e, _ := as.pte(pa, false); e == 0 || binary.LittleEndian.Uint64(as.mem[e:])&ptePresent == 0 {
			if err := as.mapPage(pa, v.prot); err != nil {
				break
			}
		}
	}
	return nil
}

// reserveFrames are kept back from fault-around, so that it never takes
// the last frames a real touch needs.
const reserveFrames = 256

// mapPage backs the page at va with a fresh frame (or keeps the one it
// has) with the given protection.
func (as *addressSpace) mapPage(va uint64, prot uint32) error { return as.setPTE(va, 0, prot) }

// setPTE maps the page at va with the given protection: to frame, or
// (frame 0) to the frame it has, or to a fresh one.
func (as *addressSpace) setPTE(va, frame uint64, prot uint32) error {
	e, err := as.pte(va, true)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	v := le.Uint64(as.mem[e:])
	if frame != 0 {
		v = frame | ptePresent | pteUser
	} else if v&ptePresent == 0 {
		pa, err := as.frame()
		if err != nil {
			return err
		}
		v = pa | ptePresent | pteUser
	}
	if prot&protWrite != 0 {
		v |= pteWrite
	}
	if prot&protExec == 0 {
		v |= 1 << 63 // NX
	} else {
		v &^= 1 << 63
	}
	le.PutUint64(as.mem[e:], v)
	pa, _ := as.frameOf(v)
	return as.machine.Map(va, pa, 4096, platform.Prot(prot))
}

// find returns the range holding va.
func (as *addressSpace) find(va uint64) *vma {
	i := sort.Search(len(as.vmas), func(i int) bool { return as.vmas[i].end > va })
	if i < len(as.vmas) && as.vmas[i].start <= va {
		return &as.vmas[i]
	}
	return nil
}

// free reports whether [start, end) overlaps no range.
func (as *addressSpace) free(start, end uint64) bool {
	i := sort.Search(len(as.vmas), func(i int) bool { return as.vmas[i].end > start })
	return i == len(as.vmas) || as.vmas[i].start >= end
}

// add records [start, end) with prot, frames taken on first touch.
func (as *addressSpace) add(start, end uint64, prot uint32) bool {
	return as.addRange(vma{start: start, end: end, prot: prot})
}

// addRange records n, replacing whatever overlapped it and merging with
// neighbours it joins; false if the program has too many ranges.
func (as *addressSpace) addRange(n vma) bool {
	as.remove(n.start, n.end)
	i := sort.Search(len(as.vmas), func(i int) bool { return as.vmas[i].start >= n.start })
	if i > 0 && as.vmas[i-1].joins(n) {
		as.vmas[i-1].end = n.end
		if i < len(as.vmas) && as.vmas[i-1].joins(as.vmas[i]) {
			as.vmas[i-1].end = as.vmas[i].end
			as.vmas = append(as.vmas[:i], as.vmas[i+1:]...)
		}
		return true
	}
	if i < len(as.vmas) && n.joins(as.vmas[i]) {
		as.vmas[i].start, as.vmas[i].pa = n.start, n.pa
		return true
	}
	if len(as.vmas) >= maxRanges {
		return false
	}
	as.vmas = append(as.vmas, vma{})
	copy(as.vmas[i+1:], as.vmas[i:])
	as.vmas[i] = n
	return true
}

// remove forgets [start, end), splitting ranges that straddle it.
func (as *addressSpace) remove(start, end uint64) {
	var out []vma
	for _, v := range as.vmas {
		if v.end <= start || v.start >= end {
			out = append(out, v)
			continue
		}
		if v.start < start {
			out = append(out, v.part(v.start, start))
		}
		if v.end > end {
			out = append(out, v.part(end, v.end))
		}
	}
	as.vmas = out
}

// place finds room for length bytes: at hint if it is free, else the
// highest free range below mmapBase.
func (as *addressSpace) place(hint, length uint64) (uint64, bool) {
	if hint >= userFloor && hint%4096 == 0 && hint < userTop && length <= userTop-hint && as.free(hint, hint+length) {
		return hint, true
	}
	top := uint64(mmapBase)
	for i := len(as.vmas) - 1; i >= 0; i-- {
		v := as.vmas[i]
		if v.start >= top {
			continue
		}
		if v.end <= top && top-v.end >= length {
			return top - length, true
		}
		top = min(top, v.start)
	}
	if top-userFloor >= length {
		return top - length, true
	}
	return 0, false
}

// load writes b at va for the loader, whatever the range's protection:
// the pages are backed with the range's protection first.
func (as *addressSpace) load(va uint64, b []byte) error {
	for len(b) > 0 {
		v := as.find(va)
		if v == nil {
			return fmt.Errorf("gen2: load at %#x outside the program's ranges", va)
		}
		if err := as.mapPage(va&^0xFFF, v.prot); err != nil {
			return err
		}
		e, _ := as.pte(va, false)
		frame, ok := as.frameOf(binary.LittleEndian.Uint64(as.mem[e:]))
		if e == 0 || !ok {
			return fmt.Errorf("gen2: load at %#x: no frame", va)
		}
		pa := frame | va&0xFFF
		k := min(uint64(len(b)), 4096-va%4096)
		copy(as.mem[pa:pa+k], b[:k])
		va, b = va+k, b[k:]
	}
	return nil
}

// copyIn reads n bytes of the program's memory at va.
func (as *addressSpace) copyIn(va, n uint64) ([]byte, bool) {
	if va < userFloor || va >= userTop || n > userTop-va {
		return nil, false
	}
	out := make([]byte, 0, n)
	for n > 0 {
		pa, ok := as.translate(va, false)
		if !ok {
			return nil, false
		}
		k := min(n, 4096-va%4096)
		out = append(out, as.mem[pa:pa+k]...)
		va, n = va+k, n-k
	}
	return out, true
}

// copyOut writes b into the program's memory at va.
func (as *addressSpace) copyOut(va uint64, b []byte) bool {
	if va < userFloor || va >= userTop || uint64(len(b)) > userTop-va {
		return false
	}
	for len(b) > 0 {
		pa, ok := as.translate(va, true)
		if !ok {
			return false
		}
		k := min(uint64(len(b)), 4096-va%4096)
		copy(as.mem[pa:pa+k], b[:k])
		va, b = va+k, b[k:]
	}
	return true
}

// allocContiguous takes pages physically contiguous zeroed frames and
// gives them a range at window plus their physical address, so that the
// program can both use them and name them to the host (ring buffers).
// It returns the first frame's physical address. The range is mapped on
// first touch, like any other: allocating a large part of a large
// partition costs nothing until the program uses it.
//
// Freed frames (freeContiguous) stay in the window: taking a mapping
// away needs TLB shootdown across vCPUs, which this version does not do.
// A program that uses pages it freed corrupts only itself; the same
// frames, allocated again, land at the same window address.
func (as *addressSpace) allocContiguous(pages, window uint64) (uint64, error) {
	if pages > as.freeFrames() {
		return 0, errNoMemory
	}
	pa, err := as.frames.Alloc(int(pages))
	if err != nil {
		return 0, errNoMemory
	}
	if !as.addRange(vma{start: window + pa, end: window + pa + pages*4096, prot: protRead | protWrite, pa: pa}) {
		as.frames.Free(pa, int(pages))
		return 0, errNoMemory
	}
	as.used += pages
	as.zero(pa, pages)
	return pa, nil
}

// freeContiguous gives back frames allocContiguous took.
func (as *addressSpace) freeContiguous(pa, pages uint64) {
	if as.frames.Free(pa, int(pages)) == nil {
		as.used -= pages
	}
}
