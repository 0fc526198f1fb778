package platform

import (
	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/guestmem"
)

// PCConfig describes a Generation 1 machine.
type PCConfig struct {
	Processors int
	Logger     hclog.Logger
}

// PC is a Generation 1 machine: guest physical memory made of regions, the
// PC's interrupt controllers and timer, and processors that start at the
// reset vector.
type PC interface {
	// MapRegion makes [gpa, gpa+len(mem)) guest memory backed by mem
	// (page aligned, a mapping the caller keeps for as long as the
	// region exists). Guest writes to a read-only region exit as MMIO.
	// A region at gpa replaces the one there.
	MapRegion(gpa uint64, mem []byte, readOnly bool) error
	// UnmapRegion removes the region at gpa, size bytes long (or marks
	// that range as having none); accesses there are MMIO.
	UnmapRegion(gpa, size uint64) error
	// SetDevices gives the machine the PC's devices, for platforms that
	// serve port I/O and MMIO inside a processor's run (tcg) rather than
	// as exits (KVM, which ignores it). Call it before the processors run.
	SetDevices(Devices)
	// DeviceWrote says a device model wrote guest memory [gpa,
	// gpa+size) behind the processors' back (DMA): processors that cache
	// translated code (tcg) drop what they have of it before they run
	// again. KVM's processors need nothing.
	DeviceWrote(gpa, size uint64)
	// SetIRQ drives ISA interrupt line irq of the machine's PIC and
	// IOAPIC.
	SetIRQ(irq uint32, level bool) error
	// NewProcessor makes processor id; call it from the locked OS thread
	// that will run it.
	NewProcessor(id uint32) (Processor, error)
	// CPUSignature is CPUID leaf 1's EAX and EDX as the processors see
	// them, for the firmware's tables.
	CPUSignature() (eax, edx uint32)
	// Close releases the machine and its processors.
	Close() error
}

// Devices are a PC's port-I/O and MMIO buses, as a platform that serves
// accesses itself reaches them.
type Devices interface {
	ReadPort(port uint16, data []byte)
	WritePort(port uint16, data []byte)
	ReadMMIO(addr uint64, data []byte)
	WriteMMIO(addr uint64, data []byte)
}

// Generation 2 layout that machine and platform share. The program's
// page tables live in guest memory: the shim keeps them (the PML4 at
// PageTableRoot, the PDPT and the page directory of the first GiB after
// it) and they are its map from the program's addresses to guest physical
// memory on every platform; KVM's processors walk them too. The first
// 2 MiB of physical memory beyond the shim's tables, and the first 2 MiB
// of virtual space (entry 0 of the first page directory), are the
// platform's own.
const (
	PageTableRoot = 0x1000   // the PML4
	FirstPD       = 0x3000   // the page directory of the first GiB
	PlatformArea  = 0x4000   // [PlatformArea, KernelAreaEnd): the platform's
	KernelAreaEnd = 0x200000 // the program's frames and addresses start here
)

// HypercallPage is where every Generation 2 program's address space has
// the hypercall page (the ABI's address; its code is the platform's).
const HypercallPage = 0x7FFFFE000000

// Protection bits of program mappings (mmap's).
type Prot uint32

const (
	ProtRead  Prot = 1
	ProtWrite Prot = 2
	ProtExec  Prot = 4
)

// ProgramConfig describes a Generation 2 machine.
type ProgramConfig struct {
	Name string
	// Memory is the partition's guest memory; the machine keeps using it
	// until Close and does not close it.
	Memory *guestmem.Memory
	Logger hclog.Logger
}

// Program is a Generation 2 machine: one address space, with one thread
// (a processor) per thread of the program.
type Program interface {
	// HypercallCode is the hypercall page's contents, which the shim maps
	// read and execute at the ABI's address. The page follows Hyper-V's
	// register convention, may clobber RAX, RCX, RDX, R8 and the flags
	// and push one word below its return address, and turns a fast
	// HvSignalEvent with flag 0 into a doorbell: a 32-bit write of the
	// connection id to DoorbellPort. A call the page cannot complete
	// reaches the shim as ExitHypercall.
	HypercallCode() []byte
	// FaultAround is how much of a range the shim backs on one page
	// fault: the platform's exit cost decides it.
	FaultAround() uint64
	// Map says that the program's pages [va, va+length) now map guest
	// physical [pa, pa+length) with prot: the page tables say so already.
	// Platforms whose processors do not walk them mirror the mapping
	// before the program runs again. Mapping a page again is allowed.
	Map(va, pa, length uint64, prot Prot) error
	// AddDoorbell makes a 32-bit write of datamatch to port signal
	// eventfd fd without an exit to the worker. The caller keeps fd open
	// until after RemoveDoorbell.
	AddDoorbell(port uint16, datamatch uint32, fd int) error
	RemoveDoorbell(port uint16, datamatch uint32) error
	// NewThread makes a thread that starts with regs; call it from the
	// locked OS thread that will run it. id is the thread's id (1 to
	// MaxThreadIDs, never reused).
	NewThread(id int, regs Regs) (Thread, error)
	// Close ends the address space and every thread still in it.
	Close() error
}

// Thread is one processor of a Program.
type Thread interface {
	Processor
	// SetReturn sets what RAX holds when the thread goes back to the
	// program after an ExitSyscall or ExitHypercall.
	SetReturn(rax uint64)
	// TSC samples the time-stamp counter the program reads and gives its
	// frequency in kHz, for the vDSO's clock.
	TSC() (tsc uint64, kHz uint64, err error)
}

// MaxThreadIDs bounds a program's thread ids over its life (on KVM each
// was a vCPU, and KVM keeps a VM's vCPUs until the VM goes).
const MaxThreadIDs = 1023

// MaxThreads bounds a program's threads at a time.
const MaxThreads = 32
