package root

import (
	"github.com/partita-hv/partita/partition/accel"
)

// resolvePlatforms finds, once, the platform Config.Accel gives each
// generation here, and logs the choice: a host without /dev/kvm runs
// Generation 2 on ptrace and, until a software CPU exists, no
// Generation 1 at all, and the log says so with the reason.
func (s *Service) resolvePlatforms() {
	args := []any{"accel", s.cfg.Accel}
	for g := 1; g <= 2; g++ {
		name, err := accel.Resolve(s.cfg.Accel, g)
		s.platforms[g] = platformChoice{name, err}
		key := []string{"", "generation1", "generation2"}[g]
		if err != nil {
			args = append(args, key, "none: "+err.Error())
		} else {
			args = append(args, key, name)
		}
	}
	s.log.Info("platforms", args...)
}

// platformName is what a partition of generation g runs on here, or ""
// if nothing can run it.
func (s *Service) platformName(g int) string {
	if g < 1 || g > 2 {
		return ""
	}
	return s.platforms[g].name
}

// platformOf is the platform a partition runs on, ran on last, or would
// run on now; the caller holds s.mu.
func (s *Service) platformOf(p *partition) string {
	if p.platform != "" {
		return p.platform
	}
	return s.platformName(p.def.Generation)
}
