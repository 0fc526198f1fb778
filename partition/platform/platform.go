// Package platform is the seam between a partition's machine and what runs
// its processors. The machines are the Generation 1 PC (package
// partition/gen1: firmware, emulated devices) and the Generation 2 program
// (package partition/gen2: a static x86-64 program and the guest kernel
// shim that serves it). The platforms are the back ends in the
// sub-packages: kvm (a KVM virtual machine), ptrace (the program's threads
// as native threads of a traced stub process) and, for Generation 1
// without KVM, tcg. The machines, the device models and the guests are the
// same on every platform; a platform only runs processors and reports what
// stopped them.
//
// A processor runs until an exit from a small vocabulary (ExitKind): port
// I/O, MMIO, halt, shutdown, system call, hypercall, exception (vector,
// error code, fault address), kicked, failed. The machine answers the exit
// and runs the processor again. Every processor is run from one locked OS
// thread, the one that created it (KVM binds a vCPU to its thread, ptrace a
// tracee to its tracer).
//
// What each generation asks of a platform:
//
//   - PC: guest memory regions mapped from the partition's memfd (and the
//     firmware ROM), read-only where the chipset says so; ISA interrupt
//     lines; processors that start at the reset vector.
//   - Program: an address space whose page tables the shim keeps in guest
//     memory (the platform mirrors what they map where it must), threads
//     that start with given registers, the hypercall page's code, and
//     doorbells: a write of a datamatch value to a port signals an eventfd
//     without an exit to the worker.
//
// Gate is the one pause gate and stop signal both machines use.
package platform

import (
	"errors"
	"fmt"
)

// Errors.
var (
	// ErrUnavailable: the platform cannot run on this host (no /dev/kvm, no
	// ptrace, no libunicorn); the message says why.
	ErrUnavailable = errors.New("platform unavailable")
	// ErrUnsupported: the platform does not run this generation.
	ErrUnsupported = errors.New("platform does not run this generation")
)

// Regs are a processor's general registers, instruction pointer, flags and
// FS base (the thread pointer of a Generation 2 program).
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
	FSBase                                 uint64
}

// ExitKind says why a processor stopped running guest code.
type ExitKind uint8

// Exit kinds.
const (
	// ExitKicked: Kick asked, or the platform had nothing to report (a
	// host signal, an interrupt window). Run again after looking at the
	// machine's state.
	ExitKicked ExitKind = iota
	// ExitPortIO: an IN or OUT the machine's port bus serves (Port, Size,
	// Count, In, Data).
	ExitPortIO
	// ExitMMIO: an access to guest physical memory no region backs, or a
	// write to a read-only region (Addr, Write, Data).
	ExitMMIO
	// ExitHalt: HLT with nothing to wake the processor in the platform.
	ExitHalt
	// ExitShutdown: a triple fault, or the platform's reset or shutdown
	// event; Message says which.
	ExitShutdown
	// ExitSyscall: a Generation 2 program's system call (Nr, Args). The
	// processor's registers are as the syscall instruction left them
	// (RCX the return address, R11 the flags). Set the result with
	// SetReturn; the next Run returns to the program as sysret would, at
	// RCX with the flags in R11.
	ExitSyscall
	// ExitHypercall: a call through the hypercall page that the page
	// could not complete itself (Control, Input, Output: RCX, RDX and R8
	// as the program passed them). Set the status with SetReturn; the
	// next Run goes on after the call.
	ExitHypercall
	// ExitException: a fault or trap in a Generation 2 program (Vector,
	// ErrorCode, Addr the fault address of a #PF). The registers are the
	// program's at the faulting instruction; the next Run retries it.
	ExitException
	// ExitFailed: the platform cannot run this processor any more
	// (Message says why: a failed entry, an internal error, a stub
	// process that died). The machine stops.
	ExitFailed
)

var exitNames = [...]string{
	ExitKicked:    "kicked",
	ExitPortIO:    "io",
	ExitMMIO:      "mmio",
	ExitHalt:      "hlt",
	ExitShutdown:  "shutdown",
	ExitSyscall:   "syscall",
	ExitHypercall: "hypercall",
	ExitException: "exception",
	ExitFailed:    "failed",
}

// NumExitKinds is how many kinds there are, for counters indexed by kind.
const NumExitKinds = len(exitNames)

func (k ExitKind) String() string {
	if int(k) < len(exitNames) {
		return exitNames[k]
	}
	return fmt.Sprintf("exit(%d)", uint8(k))
}

// Exit describes one exit. Only the fields of its kind are set.
type Exit struct {
	Kind ExitKind

	// ExitPortIO: Size bytes (1, 2 or 4) Count times. Data holds
	// Size*Count bytes: what an OUT wrote, or where an IN's bytes go
	// before the next Run. It aliases the platform's buffer.
	Port  uint16
	Size  uint8
	Count uint32
	In    bool
	// ExitMMIO: Data (1 to 8 bytes) at Addr; fill it before the next Run
	// for a read.
	Write bool
	Data  []byte
	// ExitMMIO: the address; ExitException: the fault address (CR2) of a
	// page fault.
	Addr uint64

	// ExitException.
	Vector       uint8
	ErrorCode    uint64
	HasErrorCode bool

	// ExitSyscall: the call number and its six arguments (RDI, RSI, RDX,
	// R10, R8, R9).
	Nr   uint64
	Args [6]uint64

	// ExitHypercall: Hyper-V's control word, input and output.
	Control, Input, Output uint64

	// ExitShutdown, ExitFailed: why, in one line.
	Message string
}

// VectorName names an x86 exception vector for reports.
func VectorName(v uint8) string {
	names := map[uint8]string{0: "#DE divide error", 1: "#DB debug", 2: "NMI", 3: "#BP breakpoint", 4: "#OF overflow", 5: "#BR bound range",
		6: "#UD invalid opcode", 7: "#NM device not available", 8: "#DF double fault", 10: "#TS invalid TSS", 11: "#NP segment not present",
		12: "#SS stack fault", 13: "#GP general protection", 14: "#PF page fault", 16: "#MF x87 error", 17: "#AC alignment check",
		18: "#MC machine check", 19: "#XM SIMD error", 21: "#CP control protection"}
	if n, ok := names[v]; ok {
		return n
	}
	return fmt.Sprintf("vector %d", v)
}

// Page-fault error code bits (the CPU's).
const (
	PFPresent = 1 << 0 // a protection violation, not a missing page
	PFWrite   = 1 << 1
	PFUser    = 1 << 2
	PFFetch   = 1 << 4
)

// A Platform makes machines.
type Platform interface {
	// Name is the platform's --accel name: "kvm", "ptrace", "tcg".
	Name() string
	// NewPC makes a Generation 1 machine (ErrUnsupported if the platform
	// runs only programs).
	NewPC(PCConfig) (PC, error)
	// NewProgram makes a Generation 2 machine (ErrUnsupported if the
	// platform runs only PCs).
	NewProgram(ProgramConfig) (Program, error)
	// Close releases what the platform holds (an open /dev/kvm); machines
	// made from it stay valid.
	Close() error
}

// Kicker is anything Gate can make leave guest code: a processor.
type Kicker interface {
	// Kick makes the processor's current or next Run return soon
	// (ExitKicked, or whatever exit came first). Safe from any goroutine.
	Kick()
}

// Processor is a virtual processor of either generation: run from the
// locked OS thread that created it.
type Processor interface {
	Kicker
	// Run runs guest code until the next exit. An error means the
	// platform failed, not the guest.
	Run() (Exit, error)
	// Regs returns the registers as of the last exit.
	Regs() (Regs, error)
	// SetRegs sets them for the next Run.
	SetRegs(Regs) error
	// Close releases the processor; call it from its thread.
	Close() error
}

// Counters is implemented by machines that count work they do on their
// own, without an exit to the worker (ptrace's doorbells, its injected
// calls): the worker adds them to its statistics.
type Counters interface {
	Counters() map[string]uint64
}
