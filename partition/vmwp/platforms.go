package vmwp

import (
	"fmt"

	"github.com/partita-hv/partita/partition/accel"
	"github.com/partita-hv/partita/partition/gen1"
	"github.com/partita-hv/partita/partition/platform"
)

// platforms are what a worker opens before it knows its partition: the
// platform --accel gives each generation (or why there is none), and a
// PC made ahead on Generation 1's, so that a start waits for neither.
type platforms struct {
	pl   [3]platform.Platform // by generation
	err  [3]error
	kept [3]bool // the partition uses it: close it at exit, not now

	pc    *gen1.Prepared
	pcErr error
}

// openPlatforms opens what choice gives each generation.
func openPlatforms(choice string) *platforms {
	ps := &platforms{}
	for g := 1; g <= 2; g++ {
		ps.pl[g], ps.err[g] = accel.Open(choice, g)
	}
	if ps.pl[1] != nil {
		ps.pc, ps.pcErr = gen1.Prepare(ps.pl[1], 1)
	}
	return ps
}

// get returns generation g's platform, or why there is none.
func (ps *platforms) get(g int) (platform.Platform, error) {
	if g != 1 && g != 2 {
		return nil, fmt.Errorf("generation %d: want 1 or 2", g)
	}
	if ps.err[g] != nil {
		return nil, ps.err[g]
	}
	return ps.pl[g], nil
}

// takePC hands over the PC made ahead (New owns it from there), or a
// new one if the one made ahead has another number of processors (it is
// made for one; a platform may fix the number with the machine).
func (ps *platforms) takePC(processors int) (*gen1.Prepared, error) {
	if ps.pcErr != nil {
		return nil, fmt.Errorf("prepare the machine: %w", ps.pcErr)
	}
	pc := ps.pc
	ps.pc = nil
	if pc != nil && pc.Processors() != max(processors, 1) {
		pc.Close()
		pc = nil
	}
	if pc == nil {
		if ps.pl[1] == nil {
			return nil, ps.err[1]
		}
		var err error
		if pc, err = gen1.Prepare(ps.pl[1], processors); err != nil {
			return nil, fmt.Errorf("prepare the machine: %w", err)
		}
	}
	return pc, nil
}

// keep marks generation g's platform as the running partition's: it
// stays open until the process ends.
func (ps *platforms) keep(g int) { ps.kept[g] = true }

// close releases what no partition took.
func (ps *platforms) close() {
	if ps.pc != nil {
		ps.pc.Close()
		ps.pc = nil
	}
	for g, pl := range ps.pl {
		if pl != nil && !ps.kept[g] {
			pl.Close()
		}
	}
}
