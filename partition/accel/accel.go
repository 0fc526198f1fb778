// Package accel chooses the platform (package partition/platform) that
// runs a partition: the --accel flag of vmms and vmwp. "kvm" is a KVM
// virtual machine and runs both generations where /dev/kvm opens; "ptrace"
// runs a Generation 2 program as native threads of a traced process and
// "tcg" a Generation 1 PC on a software CPU (Unicorn), both anywhere.
// "auto", the default, takes KVM where it opens and the software platform
// of each generation elsewhere.
package accel

import (
	"errors"
	"fmt"
	"strings"

	"github.com/partita-hv/partita/partition/platform"
	"github.com/partita-hv/partita/partition/platform/kvm"
	"github.com/partita-hv/partita/partition/platform/ptrace"
)

// Names of the choices.
const (
	Auto   = "auto"
	KVM    = "kvm"
	Ptrace = "ptrace"
	TCG    = "tcg"
)

// Choices lists what --accel takes.
var Choices = []string{Auto, KVM, Ptrace, TCG}

// ErrBadChoice: --accel names no platform.
var ErrBadChoice = errors.New("accel: unknown platform")

// Check reports whether name is a choice.
func Check(name string) error {
	for _, c := range Choices {
		if name == c {
			return nil
		}
	}
	return fmt.Errorf("%w %q: want one of %s", ErrBadChoice, name, strings.Join(Choices, ", "))
}

// candidates lists the platforms a choice tries for a generation, in
// order.
func candidates(choice string, generation int) []string {
	switch choice {
	case Auto:
		if generation == 1 {
			return []string{KVM, TCG}
		}
		return []string{KVM, Ptrace}
	case "":
		return candidates(Auto, generation)
	}
	return []string{choice}
}

// Open opens the platform that choice (auto, kvm, ptrace, tcg) gives a
// partition of the generation. When none can run it, the error names
// every platform tried and why, and wraps platform.ErrUnavailable.
func Open(choice string, generation int) (platform.Platform, error) {
	if err := Check(choice); err != nil && choice != "" {
		return nil, err
	}
	if generation != 1 && generation != 2 {
		return nil, fmt.Errorf("accel: generation %d: want 1 or 2", generation)
	}
	var why []string
	for _, name := range candidates(choice, generation) {
		pl, err := open(name, generation)
		if err == nil {
			return pl, nil
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, name+":") {
			msg = name + ": " + msg
		}
		why = append(why, msg)
	}
	return nil, &noPlatform{fmt.Sprintf("no platform runs a Generation %d partition here (tried %s)", generation, strings.Join(why, "; "))}
}

// noPlatform says why no platform can run a generation; it is a
// platform.ErrUnavailable.
type noPlatform struct{ msg string }

func (e *noPlatform) Error() string { return e.msg }
func (e *noPlatform) Unwrap() error { return platform.ErrUnavailable }

// Resolve says which platform Open would take, without keeping it open,
// or why none can run the generation.
func Resolve(choice string, generation int) (string, error) {
	pl, err := Open(choice, generation)
	if err != nil {
		return "", err
	}
	name := pl.Name()
	pl.Close()
	return name, nil
}

func open(name string, generation int) (platform.Platform, error) {
	switch name {
	case KVM:
		return kvm.NewPlatform()
	case Ptrace:
		if generation != 2 {
			return nil, fmt.Errorf("%w: ptrace runs Generation 2 programs only", platform.ErrUnsupported)
		}
		return ptrace.NewPlatform()
	case TCG:
		if generation != 1 {
			return nil, fmt.Errorf("%w: tcg runs Generation 1 PCs only", platform.ErrUnsupported)
		}
		return openTCG()
	}
	return nil, fmt.Errorf("%w %q", ErrBadChoice, name)
}
