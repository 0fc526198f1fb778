// Package testplatform tells tests which platform runs each generation of
// partition here, and skips (or, under CI, fails) those that have none.
// It is apart from package testenv, which the platforms' own tests use.
package testplatform

import (
	"testing"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/partition/accel"
)

// Gen2 returns the platform a Generation 2 partition gets here
// (KVM where /dev/kvm opens, else ptrace). The ptrace platform needs no
// package, so under CI its absence fails the test; elsewhere (a sandbox
// that forbids ptrace) it skips with the reason.
func Gen2(t testing.TB) string {
	t.Helper()
	name, err := accel.Resolve(accel.Auto, 2)
	if err == nil {
		return name
	}
	if testenv.InCI() {
		t.Fatalf("no platform for Generation 2: %v", err)
	}
	t.Skipf("no platform for Generation 2 here: %v", err)
	return ""
}

// RequireGen1 returns the platform a Generation 1 partition gets here
// (KVM where /dev/kvm opens, else tcg). tcg needs Debian's libunicorn,
// which .ci/run installs, so under CI its absence fails the test;
// elsewhere it skips with the reason.
func RequireGen1(t testing.TB) string {
	t.Helper()
	name, err := accel.Resolve(accel.Auto, 1)
	if err == nil {
		return name
	}
	if testenv.InCI() {
		t.Fatalf("no platform for Generation 1: %v", err)
	}
	t.Skipf("no platform for Generation 1 here: %v", err)
	return ""
}
