package kvm

import (
	"sync"

	"github.com/partita-hv/partita/partition/platform"
)

// Platform is KVM as a partition platform: an open /dev/kvm and the CPUID
// it offers, read once.
type Platform struct {
	sys *System

	cpuidOnce sync.Once
	cpuid     []CPUIDEntry
	cpuidErr  error
}

var _ platform.Platform = (*Platform)(nil)

// NewPlatform opens /dev/kvm; the error wraps platform.ErrUnavailable
// where the host has no usable KVM.
func NewPlatform() (*Platform, error) {
	sys, err := Open()
	if err != nil {
		return nil, unavailable(err)
	}
	return &Platform{sys: sys}, nil
}

// unavailable marks an error from Open as the platform's absence.
func unavailable(err error) error {
	return &platformError{err}
}

type platformError struct{ err error }

func (e *platformError) Error() string { return e.err.Error() }
func (e *platformError) Unwrap() []error {
	return []error{e.err, platform.ErrUnavailable}
}

// Name is "kvm".
func (*Platform) Name() string { return "kvm" }

// Close closes /dev/kvm; machines made from it stay valid.
func (pl *Platform) Close() error { return pl.sys.Close() }

// supportedCPUID is KVM's CPUID, read once; callers copy before changing
// it.
func (pl *Platform) supportedCPUID() ([]CPUIDEntry, error) {
	pl.cpuidOnce.Do(func() { pl.cpuid, pl.cpuidErr = pl.sys.SupportedCPUID() })
	return pl.cpuid, pl.cpuidErr
}

// vcpuCPUID is the CPUID of processor id: KVM's, with the processor's
// APIC id in leaf 1 (EBX[31:24]) and the x2APIC leaves 0xB and 0x1F.
func (pl *Platform) vcpuCPUID(id uint32) ([]CPUIDEntry, error) {
	base, err := pl.supportedCPUID()
	if err != nil {
		return nil, err
	}
	cpuid := append([]CPUIDEntry(nil), base...)
	for i := range cpuid {
		e := &cpuid[i]
		switch e.Function {
		case 1:
			e.EBX = e.EBX&0x00FFFFFF | id<<24
		case 0xB, 0x1F:
			e.EDX = id
		}
	}
	return cpuid, nil
}
