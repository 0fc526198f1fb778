// Package testenv decides what tests do when a machine lacks something:
// a tool that .ci/run installs must be there under CI (CI=true), so its
// absence fails the test there and only skips it elsewhere; /dev/kvm,
// which no package provides, skips everywhere with a clear message.
package testenv

import (
	"os"
	"os/exec"
	"sort"
	"testing"
)

// InCI reports whether the tests run under CI.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireTool returns the path of an executable that .ci/run installs,
// skipping the test without it, or failing it under CI.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if InCI() {
		t.Fatalf("%s not found, but .ci/run installs it: %v", name, err)
	}
	t.Skipf("%s not installed (apt-get install it, or run .ci/run): %v", name, err)
	return ""
}

// RequireFile returns path if it exists, skipping the test without it, or
// failing it under CI; pkg names the Debian package .ci/run installs it
// from.
func RequireFile(t testing.TB, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if InCI() {
		t.Fatalf("%s not found, but .ci/run installs it (Debian package %s)", path, pkg)
	}
	t.Skipf("%s not found (apt-get install %s, or run .ci/run)", path, pkg)
	return ""
}

// Median is the median of a benchmark's samples (0 for none).
func Median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
