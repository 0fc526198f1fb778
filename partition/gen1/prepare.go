package gen1

import (
	"errors"
	"fmt"
	"sync"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/kvm"
)

// Prepared is a KVM virtual machine made ahead of its partition: the
// /dev/kvm handle, the VM with its in-kernel irqchip and PIT, and the
// kernel's one-time cost of a VM's first memory slot already paid
// (measured at 6–7 ms on the development machines, more than everything
// else a start does). A worker the root keeps spare prepares itself while
// it waits, so that a start does not wait for this.
type Prepared struct {
	sys *kvm.System
	vm  *kvm.VM

	closeOnce sync.Once
	closeErr  error
}

// slotWarm is the slot Prepare adds and removes again; warmGPA is far
// above any RAM or ROM a Gen1 partition has.
const (
	slotWarm = 31
	warmGPA  = 1 << 36
)

// Prepare makes a VM ready for New (Config.Prepared).
func Prepare() (*Prepared, error) {
	sys, err := kvm.Open()
	if err != nil {
		return nil, err
	}
	vm, err := sys.CreateVM()
	if err != nil {
		sys.Close()
		return nil, err
	}
	pr := &Prepared{sys: sys, vm: vm}
	if err := pr.warm(); err != nil {
		pr.Close()
		return nil, err
	}
	return pr, nil
}

func (pr *Prepared) warm() error {
	if err := pr.vm.PlatformDefaults(); err != nil {
		return err
	}
	// Add a one-page slot and delete it: the page is never guest-visible
	// once Prepare returns.
	page, err := guestmem.New("warm", guestmem.PageSize)
	if err != nil {
		return err
	}
	defer page.Close()
	if err := pr.vm.SetMemory(slotWarm, warmGPA, page.Bytes(), 0); err != nil {
		return fmt.Errorf("warm-up slot: %w", err)
	}
	if err := pr.vm.SetMemory(slotWarm, warmGPA, nil, 0); err != nil {
		return fmt.Errorf("remove the warm-up slot: %w", err)
	}
	return nil
}

// Close releases the VM; later calls return the first call's result.
func (pr *Prepared) Close() error {
	pr.closeOnce.Do(func() { pr.closeErr = errors.Join(pr.vm.Close(), pr.sys.Close()) })
	return pr.closeErr
}
