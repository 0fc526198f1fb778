package gen1

import (
	"fmt"
	"sync"

	"github.com/partita-hv/partita/partition/platform"
)

// Prepared is a machine made ahead of its partition, on its platform
// (on KVM: the VM with its in-kernel irqchip and PIT, and the kernel's
// one-time cost of a VM's first memory slot already paid). A worker the
// root keeps spare prepares one while it waits, so that a start does not
// wait for this.
type Prepared struct {
	pc         platform.PC
	platform   string
	processors int

	closeOnce sync.Once
	closeErr  error
}

// Prepare makes a machine for New (Config.Prepared) on pl, which stays
// the caller's.
func Prepare(pl platform.Platform, processors int) (*Prepared, error) {
	pc, err := pl.NewPC(platform.PCConfig{Processors: processors})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pl.Name(), err)
	}
	return &Prepared{pc: pc, platform: pl.Name(), processors: max(processors, 1)}, nil
}

// Processors is the number of processors the machine was made with (a
// partition with another number cannot use it).
func (pr *Prepared) Processors() int { return pr.processors }

// Platform names the platform the machine runs on.
func (pr *Prepared) Platform() string { return pr.platform }

// Close releases the machine; later calls return the first call's result.
func (pr *Prepared) Close() error {
	pr.closeOnce.Do(func() { pr.closeErr = pr.pc.Close() })
	return pr.closeErr
}
