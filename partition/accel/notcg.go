//go:build !cgo || notcg

package accel

import (
	"fmt"

	"github.com/partita-hv/partita/partition/platform"
)

// openTCG: this binary was built without the tcg platform (CGO_ENABLED=0
// or the notcg tag), which links Debian's libunicorn through cgo.
func openTCG() (platform.Platform, error) {
	return nil, fmt.Errorf("%w: this binary was built without tcg (it needs cgo and libunicorn-dev: apt-get install gcc libunicorn-dev, then rebuild)", platform.ErrUnavailable)
}
