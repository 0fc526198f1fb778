package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues an ioctl, retrying when a signal interrupts it.
func ioctl(fd uintptr, req, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, arg)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// ioctlPtr is ioctl with a pointer argument.
//
// SAFETY: p points to a live Go value of the size the request encodes
// (each caller passes the mirror struct for that request); the kernel reads
// or writes it during the call only, and the pointer keeps it alive.
func ioctlPtr(fd uintptr, req uintptr, p unsafe.Pointer) error {
	_, err := ioctl(fd, req, uintptr(p))
	return err
}

func (vm *VM) setIdentityMapAddr(addr uint64) error {
	return ioctlPtr(vm.f.Fd(), kvmSetIdentityMapAddr, unsafe.Pointer(&addr))
}

func (vm *VM) createPIT2() error {
	cfg := pitConfig{Flags: pitSpeakerDummy}
	return ioctlPtr(vm.f.Fd(), kvmCreatePIT2, unsafe.Pointer(&cfg))
}

// SetMemory maps host memory mem (for guest RAM, a partition memfd mapping;
// its length a multiple of 4 KiB) at guest physical address gpa in the
// given slot. Flags may be MemReadOnly. A zero-length mem deletes the slot.
// The caller keeps mem mapped for as long as the slot exists.
func (vm *VM) SetMemory(slot uint32, gpa uint64, mem []byte, flags uint32) error {
	if len(mem)%4096 != 0 || gpa%4096 != 0 {
		return fmt.Errorf("kvm: memory slot %d: gpa %#x size %#x not page aligned", slot, gpa, len(mem))
	}
	r := userspaceMemoryRegion{Slot: slot, Flags: flags, GuestPhysAddr: gpa, MemorySize: uint64(len(mem))}
	if len(mem) > 0 {
		// SAFETY: the kernel records this address and accesses the memory
		// whenever the guest does; the caller keeps mem mapped (it is not
		// Go-heap memory that could move or be freed) while the slot exists.
		r.UserspaceAddr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem))))
	}
	if err := ioctlPtr(vm.f.Fd(), kvmSetUserMemoryRegion, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("kvm: memory slot %d at %#x: %w", slot, gpa, err)
	}
	return nil
}

// IOEventFD makes guest writes to addr (a port if pio, else an MMIO
// address) of length bytes signal eventfd fd inside the kernel, without an
// exit; with datamatch non-nil, only writes of that value do. Deassign
// removes a registration made with the same arguments.
func (vm *VM) IOEventFD(fd int, addr uint64, length uint32, pio bool, datamatch *uint64, deassign bool) error {
	e := ioeventfd{Addr: addr, Len: length, FD: int32(fd)}
	if pio {
		e.Flags |= ioeventfdFlagPIO
	}
	if datamatch != nil {
		e.Flags |= ioeventfdFlagDatamatch
		e.Datamatch = *datamatch
	}
	if deassign {
		e.Flags |= ioeventfdFlagDeassign
	}
	return ioctlPtr(vm.f.Fd(), kvmIOEventFD, unsafe.Pointer(&e))
}

// IRQFD makes a write to eventfd fd raise interrupt line gsi in the
// in-kernel irqchip (edge); deassign removes it.
func (vm *VM) IRQFD(fd int, gsi uint32, deassign bool) error {
	r := irqfd{FD: uint32(fd), GSI: gsi}
	if deassign {
		r.Flags = irqfdFlagDeassign
	}
	return ioctlPtr(vm.f.Fd(), kvmIRQFD, unsafe.Pointer(&r))
}

// IRQLine sets interrupt line irq of the in-kernel irqchip to level.
func (vm *VM) IRQLine(irq uint32, level bool) error {
	l := irqLevel{IRQ: irq}
	if level {
		l.Level = 1
	}
	return ioctlPtr(vm.f.Fd(), kvmIRQLine, unsafe.Pointer(&l))
}

// SupportedCPUID returns the CPUID entries KVM can expose.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	var buf struct {
		n       uint32
		_       uint32
		entries [maxCPUIDEntries]CPUIDEntry
	}
	buf.n = maxCPUIDEntries
	if err := ioctlPtr(s.f.Fd(), kvmGetSupportedCPUID, unsafe.Pointer(&buf)); err != nil {
		return nil, fmt.Errorf("kvm: supported cpuid: %w", err)
	}
	return append([]CPUIDEntry(nil), buf.entries[:buf.n]...), nil
}

// VCPU is a virtual processor.
type VCPU struct {
	vm  *VM
	id  uint32
	f   *os.File
	run []byte // the shared kvm_run page(s)

	tid       atomic.Int32 // thread running KVM_RUN, 0 when none
	closeOnce sync.Once

	// With sync regs on (EnableSyncRegs), Run asks KVM to leave the
	// general registers in kvm_run at every exit; Regs and SetRegs then
	// read and write them there, and KVM loads written ones at the next
	// Run: no ioctl. Only the thread that runs the vCPU uses them.
	syncRegs  bool
	regsInRun bool // kvm_run holds the current registers
}

// kvm_run's sync-regs area (KVM_CAP_SYNC_REGS): the valid and dirty
// masks, then struct kvm_sync_regs, whose first member is kvm_regs.
const (
	runOffValidRegs = 288
	runOffDirtyRegs = 296
	runOffSyncRegs  = 304
	syncX86Regs     = 1
	capSyncRegs     = 74
)

// EnableSyncRegs makes Regs and SetRegs go through kvm_run from the next
// Run on, if KVM offers it; false if it does not (they stay ioctls).
func (v *VCPU) EnableSyncRegs() bool {
	n, err := ioctl(v.vm.f.Fd(), kvmCheckExtension, capSyncRegs)
	if err != nil || n&syncX86Regs == 0 || len(v.run) < runOffSyncRegs+int(unsafe.Sizeof(Regs{})) {
		return false
	}
	v.syncRegs = true
	return true
}

// syncedRegs is the kvm_regs in kvm_run.
func (v *VCPU) syncedRegs() *Regs { return (*Regs)(unsafe.Pointer(&v.run[runOffSyncRegs])) }

// CreateVCPU adds virtual processor id.
func (vm *VM) CreateVCPU(id uint32) (*VCPU, error) {
	fd, err := ioctl(vm.f.Fd(), kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("kvm: create vcpu %d: %w", id, err)
	}
	run, err := unix.Mmap(int(fd), 0, vm.sys.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil || len(run) < runSize {
		unix.Close(int(fd))
		return nil, fmt.Errorf("kvm: map vcpu %d run page: %w", id, err)
	}
	v := &VCPU{vm: vm, id: id, f: os.NewFile(fd, fmt.Sprintf("kvm-vcpu-%d", id)), run: run}
	vm.mu.Lock()
	vm.vcpus = append(vm.vcpus, v)
	vm.mu.Unlock()
	return v, nil
}

// ID is the vCPU's index.
func (v *VCPU) ID() uint32 { return v.id }

func (v *VCPU) close() error {
	var err error
	v.closeOnce.Do(func() { err = errors.Join(unix.Munmap(v.run), v.f.Close()) })
	return err
}

// Regs returns the general registers.
func (v *VCPU) Regs() (Regs, error) {
	if v.regsInRun {
		return *v.syncedRegs(), nil
	}
	var r Regs
	err := ioctlPtr(v.f.Fd(), kvmGetRegs, unsafe.Pointer(&r))
	return r, err
}

// SetRegs sets the general registers.
func (v *VCPU) SetRegs(r Regs) error {
	if v.regsInRun {
		*v.syncedRegs() = r
		p := (*uint64)(unsafe.Pointer(&v.run[runOffDirtyRegs]))
		*p |= syncX86Regs
		return nil
	}
	return ioctlPtr(v.f.Fd(), kvmSetRegs, unsafe.Pointer(&r))
}

// Sregs returns the special registers.
func (v *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	err := ioctlPtr(v.f.Fd(), kvmGetSregs, unsafe.Pointer(&s))
	return s, err
}

// SetSregs sets the special registers.
func (v *VCPU) SetSregs(s Sregs) error { return ioctlPtr(v.f.Fd(), kvmSetSregs, unsafe.Pointer(&s)) }

// FPU returns the x87/SSE state.
func (v *VCPU) FPU() (FPU, error) {
	var f FPU
	err := ioctlPtr(v.f.Fd(), kvmGetFPU, unsafe.Pointer(&f))
	return f, err
}

// SetFPU sets the x87/SSE state.
func (v *VCPU) SetFPU(f FPU) error { return ioctlPtr(v.f.Fd(), kvmSetFPU, unsafe.Pointer(&f)) }

// msrBuf mirrors struct kvm_msrs with room for entries.
type msrBuf struct {
	n       uint32
	_       uint32
	entries [64]MSR
}

// SetMSRs writes MSRs; it fails unless KVM accepted every one.
func (v *VCPU) SetMSRs(msrs []MSR) error { return v.msrCall(kvmSetMSRs, "set", msrs) }

// MSRs reads the MSRs named by the Index of each entry, in place.
func (v *VCPU) MSRs(msrs []MSR) error { return v.msrCall(kvmGetMSRs, "get", msrs) }

// msrCall runs KVM_SET_MSRS or KVM_GET_MSRS over msrs; both return how
// many entries were processed, which must be all of them.
func (v *VCPU) msrCall(req uintptr, what string, msrs []MSR) error {
	var b msrBuf
	if len(msrs) > len(b.entries) {
		return fmt.Errorf("kvm: %d MSRs in one call, at most %d", len(msrs), len(b.entries))
	}
	b.n = uint32(copy(b.entries[:], msrs))
	n, err := ioctl(v.f.Fd(), req, uintptr(unsafe.Pointer(&b)))
	if err != nil {
		return fmt.Errorf("kvm: %s msrs: %w", what, err)
	}
	if int(n) != len(msrs) {
		return fmt.Errorf("kvm: %s msrs: MSR %#x refused", what, msrs[n].Index)
	}
	copy(msrs, b.entries[:n])
	return nil
}

// SetCPUID sets the CPUID the guest sees.
func (v *VCPU) SetCPUID(entries []CPUIDEntry) error {
	if len(entries) > maxCPUIDEntries {
		return fmt.Errorf("kvm: %d CPUID entries, at most %d", len(entries), maxCPUIDEntries)
	}
	var buf struct {
		n       uint32
		_       uint32
		entries [maxCPUIDEntries]CPUIDEntry
	}
	buf.n = uint32(copy(buf.entries[:], entries))
	return ioctlPtr(v.f.Fd(), kvmSetCPUID2, unsafe.Pointer(&buf))
}

// Run enters the guest until the next exit and returns its reason. It does
// not retry when a signal interrupts KVM_RUN: a Kick, or any signal that
// arrives, returns ExitKicked so the caller can look at its state. Call it
// from a locked OS thread.
func (v *VCPU) Run() (ExitReason, error) {
	if v.syncRegs {
		*(*uint64)(unsafe.Pointer(&v.run[runOffValidRegs])) = syncX86Regs
	}
	v.tid.Store(int32(unix.Gettid()))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, v.f.Fd(), kvmRun, 0)
	v.tid.Store(0)
	atomic.AndUint32(v.runWord0(), ^uint32(immediateExitBit))
	// KVM stores the registers on every return from KVM_RUN; on an
	// error we do not trust that and go back to the ioctls.
	v.regsInRun = v.syncRegs && (errno == 0 || errno == unix.EINTR || errno == unix.EAGAIN)
	switch errno {
	case 0:
		return ExitReason(binary.LittleEndian.Uint32(v.run[runOffExitReason:])), nil
	case unix.EINTR, unix.EAGAIN:
		return ExitKicked, nil
	}
	return 0, fmt.Errorf("kvm: run vcpu %d: %w", v.id, errno)
}

// Kick makes the vCPU leave the guest soon: the current or next Run returns
// ExitKicked. Safe from any goroutine.
func (v *VCPU) Kick() {
	// immediate_exit makes a KVM_RUN that has not entered the guest yet
	// return at once; the signal interrupts one that has.
	atomic.OrUint32(v.runWord0(), immediateExitBit)
	if tid := v.tid.Load(); tid != 0 {
		unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// immediateExitBit is kvm_run.immediate_exit (byte 1) within the first
// 32-bit word, which also holds request_interrupt_window (byte 0).
const immediateExitBit = 1 << (8 * runOffImmediateExit)

// runWord0 is the first 32-bit word of kvm_run, for atomic access.
//
// SAFETY: run is the page-aligned kvm_run mapping, at least runSize bytes,
// so its first four bytes are in bounds and aligned.
func (v *VCPU) runWord0() *uint32 { return (*uint32)(unsafe.Pointer(&v.run[0])) }

// IO returns the port-I/O exit. Valid after Run returned ExitIO.
func (v *VCPU) IO() IOExit {
	e := v.run[runOffExit:]
	io := IOExit{
		In:    e[0] != ioDirectionOut,
		Size:  e[1],
		Port:  binary.LittleEndian.Uint16(e[2:]),
		Count: binary.LittleEndian.Uint32(e[4:]),
	}
	off := binary.LittleEndian.Uint64(e[8:])
	n := uint64(io.Size) * uint64(io.Count)
	if off <= uint64(len(v.run)) && n <= uint64(len(v.run))-off {
		io.Data = v.run[off : off+n]
	}
	return io
}

// MMIO returns the MMIO exit. Valid after Run returned ExitMMIO.
func (v *VCPU) MMIO() MMIOExit {
	e := v.run[runOffExit:]
	n := min(binary.LittleEndian.Uint32(e[16:]), 8)
	return MMIOExit{
		Addr:  binary.LittleEndian.Uint64(e[0:]),
		Data:  e[8 : 8+n],
		Write: e[20] != 0,
	}
}

// ExitWord returns the u32 at the start of the exit union: the hardware
// entry failure reason, the internal-error sub-error, or the system-event
// type, for reports.
func (v *VCPU) ExitWord() uint32 {
	return binary.LittleEndian.Uint32(v.run[runOffExit:])
}

// TSCKHz is the frequency of the vCPU's time-stamp counter, in kHz
// (KVM_GET_TSC_KHZ).
func (v *VCPU) TSCKHz() (uint32, error) {
	r, err := ioctl(v.f.Fd(), kvmGetTSCKHz, 0)
	return uint32(r), err
}
