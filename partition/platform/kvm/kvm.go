// Package kvm is the KVM platform (package partition/platform): a
// Generation 1 PC is a KVM VM with the in-kernel irqchip and PIT (pc.go),
// and a Generation 2 program runs at CPL3 in a VM whose few CPL0
// structures this package builds and whose traps it decodes (program.go).
//
// Underneath is Partita's thin layer over Linux's /dev/kvm: a VM with
// memory slots, the in-kernel irqchip and PIT, ioeventfds and irqfds; its
// vCPUs with their registers, special registers, FPU, MSRs and CPUID; and
// one KVM_RUN at a time, whose exit the caller reads through typed
// accessors. Nothing here knows about devices.
//
// Every ioctl and every use of unsafe in the worker lives in this package
// (ioctl_unsafe.go). Types that mirror kernel structures say so and have
// their sizes checked by tests against the layouts of <linux/kvm.h>.
//
// A VCPU must be run from one locked OS thread (runtime.LockOSThread):
// KVM binds a vCPU to the thread that runs it, and Kick interrupts that
// thread with a signal.
package kvm

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Errors.
var (
	// ErrUnavailable: /dev/kvm cannot be opened or is not a usable KVM.
	ErrUnavailable = errors.New("kvm: unavailable")
	// ErrMissingCapability: the kernel lacks something Partita needs.
	ErrMissingCapability = errors.New("kvm: missing capability")
)

// Capabilities Partita checks for (KVM_CAP_*).
const (
	CapIRQChip       = 0x0
	CapUserMemory    = 0x3
	CapNrMemslots    = 0xa
	CapIRQFD         = 0x20
	CapPIT2          = 0x21
	CapIOEventFD     = 0x24
	CapImmediateExit = 0x88
)

// Exit reasons (KVM_EXIT_*), and ExitKicked for a run that Kick ended.
type ExitReason uint32

const (
	ExitUnknown       ExitReason = 0
	ExitIO            ExitReason = 2
	ExitDebug         ExitReason = 4
	ExitHLT           ExitReason = 5
	ExitMMIO          ExitReason = 6
	ExitIRQWindowOpen ExitReason = 7
	ExitShutdown      ExitReason = 8
	ExitFailEntry     ExitReason = 9
	ExitIntr          ExitReason = 10
	ExitInternalError ExitReason = 17
	ExitSystemEvent   ExitReason = 24
	// ExitKicked is Partita's: KVM_RUN returned EINTR because Kick asked.
	ExitKicked ExitReason = 0xFFFF_0001
)

func (r ExitReason) String() string {
	switch r {
	case ExitIO:
		return "io"
	case ExitHLT:
		return "hlt"
	case ExitMMIO:
		return "mmio"
	case ExitShutdown:
		return "shutdown"
	case ExitFailEntry:
		return "fail-entry"
	case ExitIntr:
		return "intr"
	case ExitInternalError:
		return "internal-error"
	case ExitSystemEvent:
		return "system-event"
	case ExitKicked:
		return "kicked"
	case ExitIRQWindowOpen:
		return "irq-window-open"
	case ExitDebug:
		return "debug"
	}
	return fmt.Sprintf("exit(%d)", uint32(r))
}

// System is an open /dev/kvm.
type System struct {
	f        *os.File
	mmapSize int
}

// Open opens /dev/kvm and checks the API version and the capabilities
// every partition needs: user memory, ioeventfds and immediate exit. What
// only a PC needs (the in-kernel irqchip and PIT) is checked when one is
// made (PlatformDefaults).
func Open() (*System, error) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s := &System{f: f}
	if v, err := ioctl(f.Fd(), kvmGetAPIVersion, 0); err != nil || v != 12 {
		f.Close()
		return nil, fmt.Errorf("%w: API version %d (%v), want 12", ErrUnavailable, v, err)
	}
	for _, c := range []struct {
		cap  uintptr
		name string
	}{{CapUserMemory, "user memory"}, {CapIOEventFD, "ioeventfd"}, {CapImmediateExit, "immediate exit"}} {
		if n, err := s.Check(c.cap); err != nil || n <= 0 {
			f.Close()
			return nil, fmt.Errorf("%w: %s", ErrMissingCapability, c.name)
		}
	}
	n, err := ioctl(f.Fd(), kvmGetVCPUMmapSize, 0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vcpu mmap size: %w", err)
	}
	s.mmapSize = int(n)
	return s, nil
}

// Check returns KVM_CHECK_EXTENSION for a capability (0: absent).
func (s *System) Check(capability uintptr) (int, error) {
	n, err := ioctl(s.f.Fd(), kvmCheckExtension, capability)
	return int(n), err
}

// Close closes /dev/kvm (VMs stay valid).
func (s *System) Close() error { return s.f.Close() }

// VM is a KVM virtual machine.
type VM struct {
	sys *System
	f   *os.File

	mu    sync.Mutex
	vcpus []*VCPU // guarded by mu
}

// CreateVM makes an empty VM.
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctl(s.f.Fd(), kvmCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("create vm: %w", err)
	}
	return &VM{sys: s, f: os.NewFile(fd, "kvm-vm")}, nil
}

// Close closes the VM and its vCPUs.
func (vm *VM) Close() error {
	vm.mu.Lock()
	vcpus := vm.vcpus
	vm.vcpus = nil
	vm.mu.Unlock()
	var errs []error
	for _, v := range vcpus {
		errs = append(errs, v.close())
	}
	return errors.Join(append(errs, vm.f.Close())...)
}

// MemoryFlags for SetMemory.
const (
	MemReadOnly = 1 << 1 // KVM_MEM_READONLY: guest writes exit as MMIO
)

// PlatformDefaults sets up what an x86 PC VM needs before its vCPUs: the
// TSS and identity-map pages just below the 4 GiB ROM, the in-kernel
// PIC/IOAPIC/LAPIC and the PIT.
func (vm *VM) PlatformDefaults() error {
	for _, c := range []struct {
		cap  uintptr
		name string
	}{{CapIRQChip, "irqchip"}, {CapPIT2, "pit2"}} {
		if n, err := vm.sys.Check(c.cap); err != nil || n <= 0 {
			return fmt.Errorf("%w: %s", ErrMissingCapability, c.name)
		}
	}
	if _, err := ioctl(vm.f.Fd(), kvmSetTSSAddr, 0xFFFB_D000); err != nil {
		return fmt.Errorf("set tss addr: %w", err)
	}
	if err := vm.setIdentityMapAddr(0xFFFB_C000); err != nil {
		return fmt.Errorf("set identity map addr: %w", err)
	}
	if _, err := ioctl(vm.f.Fd(), kvmCreateIRQChip, 0); err != nil {
		return fmt.Errorf("create irqchip: %w", err)
	}
	if err := vm.createPIT2(); err != nil {
		return fmt.Errorf("create pit2: %w", err)
	}
	return nil
}
