// Package tcg is the tcg platform (package partition/platform): a
// Generation 1 PC whose processors are QEMU's TCG, through Unicorn
// (Debian's libunicorn-dev, bound in package uc), for hosts without KVM.
//
// Unicorn is a CPU and nothing more. What a PC's processors need beyond
// it is here:
//
//   - the interrupt controllers and timer a KVM VM has in its kernel: the
//     8259A pair with the ELCR (emulation/pic) and the 8254 with port 0x61
//     (emulation/pit), on the host clock;
//   - interrupt delivery: Unicorn hands every INT n and exception to a
//     hook and never goes through the IVT or IDT, so this package pushes
//     the frame and loads CS:IP itself, in real mode through the IVT and in
//     32-bit protected mode (ring 0, no paging) through the IDT, and takes
//     a hardware interrupt at the first block the guest runs with IF set;
//   - the reset state: Unicorn opens in 32-bit protected mode, so the
//     processor starts on a small stub that loads a 16-bit code segment,
//     clears CR0.PE and jumps to F000:FFF0, as a real CPU comes out of
//     reset (Unicorn computes a 16-bit engine's start address from CS,
//     which a real-mode firmware that enters protected mode would break);
//   - HLT: the engine returns, and the processor waits for an interrupt
//     without spinning;
//   - read-only memory: a store to ROM (or to shadow RAM the chipset made
//     read-only) is dropped, as the bus drops it, and counted;
//   - CPUID from a table of its own, so that a guest sees the same
//     processor whatever Unicorn's model is;
//   - DMA: a device that writes guest memory (platform.PC.DeviceWrote)
//     stops the engine, which then drops its translations of those pages,
//     so that code a disk read brings in is the code that runs.
//
// Guests run in real mode or in 32-bit protected mode without paging
// (SeaBIOS, boot loaders): Unicorn 2.0.1 fetches through page tables
// only where the virtual address is also a mapped physical one (an
// instruction at virtual 0x401000 mapped to physical 0x1000 stops it
// with UC_ERR_FETCH_UNMAPPED), and this platform does not deliver
// interrupts with paging on; it says so and stops the partition.
//
// One engine runs a partition, and its processors take turns on it
// (Unicorn is not thread-safe, and LOCK'd instructions are not atomic
// across two engines sharing memory): each keeps its state in a context
// of its own while another runs, a turn lasts until the processor halts
// or 2 ms pass with another waiting, and a processor that waits (in HLT,
// or for its start-up IPI) sleeps. Each processor has a local APIC
// (emulation/lapic) and the machine an IOAPIC (emulation/ioapic), wired
// as KVM wires them by default: ISA line n is 8259A input n and IOAPIC
// pin n; the 8259A reaches the bootstrap processor through LINT0. INIT
// and start-up IPIs start the others, so SeaBIOS counts them all. Port
// I/O and MMIO are served inside the engine's hooks, through the PC's
// buses (platform.Devices), after the APICs' pages: the platform counts
// them.
package tcg

import (
	"fmt"

	"github.com/partita-hv/partita/partition/platform"
	"github.com/partita-hv/partita/partition/platform/tcg/uc"
)

// Platform is TCG as a partition platform.
type Platform struct{}

var _ platform.Platform = (*Platform)(nil)

// NewPlatform checks the library: Unicorn 2.
func NewPlatform() (*Platform, error) {
	major, minor, err := uc.Version()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", platform.ErrUnavailable, err)
	}
	if major != 2 {
		return nil, fmt.Errorf("%w: libunicorn %d.%d, want 2.x", platform.ErrUnavailable, major, minor)
	}
	return &Platform{}, nil
}

// Name is "tcg".
func (*Platform) Name() string { return "tcg" }

// Close has nothing to release.
func (*Platform) Close() error { return nil }

// NewProgram: Generation 2 programs run on KVM or ptrace.
func (*Platform) NewProgram(platform.ProgramConfig) (platform.Program, error) {
	return nil, fmt.Errorf("%w: tcg runs Generation 1 PCs only", platform.ErrUnsupported)
}
