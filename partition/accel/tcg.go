//go:build cgo && !notcg

package accel

import (
	"github.com/partita-hv/partita/partition/platform"
	"github.com/partita-hv/partita/partition/platform/tcg"
)

// openTCG opens the tcg platform, which this binary has (built with cgo
// against libunicorn).
func openTCG() (platform.Platform, error) { return tcg.NewPlatform() }
