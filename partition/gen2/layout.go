// Package gen2 runs a Generation 2 (enlightened) partition's guest: a
// static x86-64 Linux executable, entered in long mode at CPL3 with no
// firmware and no guest kernel, on a platform (package
// partition/platform: KVM, or ptrace where the host has no KVM). The
// worker serves the program's system calls itself (the guest kernel
// shim): it keeps the program's address space (its ranges and its page
// tables, in guest memory, on every platform), its threads (one
// processor each), its descriptors, its waits and its clock, and the
// enlightened ABI: the hypercall page and the SynIC pages. The platform
// only runs the threads and reports their system calls, hypercalls and
// faults.
package gen2

import (
	"encoding/binary"
	"fmt"

	"github.com/partita-hv/partita/partition/platform"
)

// Guest physical layout: the program's page-table root (shared with the
// platform, see platform.PageTableRoot), the rest of the first 2 MiB for
// the platform, the program's frames from userBase.
const (
	pml4Addr  = platform.PageTableRoot
	pdptAddr  = 0x2000
	pdAddr    = platform.FirstPD // the page directory of the first GiB
	userBase  = platform.KernelAreaEnd
	largePage = 2 << 20
	// maxMemory is the largest partition: Hyper-V's 64 GiB per VM of the
	// design's era. Memory is sparse: only what the program touches is
	// ever allocated.
	maxMemory = 64 << 30
)

// DoorbellPort is the port of the hypercall page's doorbell: each
// channel's doorbell is registered with the platform on it, matching its
// connection id, so a signal reaches the root without an exit to the
// worker on KVM and without waking the shim on ptrace. A doorbell that
// matches nothing reaches the shim as the slow path of the hypercall.
const DoorbellPort = platform.DoorbellPort

// Page-table entry bits.
const (
	ptePresent = 1 << 0
	pteWrite   = 1 << 1
	pteUser    = 1 << 2
	ptePS      = 1 << 7
)

// checkMemory refuses sizes a partition cannot have.
func checkMemory(size uint64) error {
	if size < 2*largePage || size%largePage != 0 || size > maxMemory {
		return fmt.Errorf("gen2: memory %#x bytes: want 4 MiB to 64 GiB in whole 2 MiB pages", size)
	}
	return nil
}

// buildPageTableRoot clears the shim's part of the kernel area and links
// the PML4, the PDPT and the first GiB's page directory; the platform
// fills the rest of the first 2 MiB and PD entry 0 itself.
func buildPageTableRoot(mem []byte) {
	le := binary.LittleEndian
	clear(mem[:platform.PlatformArea])
	le.PutUint64(mem[pml4Addr:], pdptAddr|ptePresent|pteWrite|pteUser)
	le.PutUint64(mem[pdptAddr:], pdAddr|ptePresent|pteWrite|pteUser)
}
