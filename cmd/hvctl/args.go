package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// invocation is a parsed command line.
type invocation struct {
	verb string
	name string // the NAME or ID operand, when the verb takes one

	// Global flags.
	server   string
	stateDir string // set only by an explicit --state-dir
	output   string // "table" or "json"

	// new-vm.
	generation int
	memoryMB   uint64
	processors int
	firmware   string
	guest      string
	disks      []string
	switches   []string

	turnOff bool // stop-vm
	follow  bool // get-vmconsole

	items []string // set-vmkvp: KEY=VALUE
	keys  []string // remove-vmkvp
}

// usageError is a mistake on the command line: exit status 2, with usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// errHelp: the user asked for the usage text.
var errHelp = errors.New("help")

// verbs maps each verb to how many operands it takes (min, max) and its
// own flags.
var verbs = map[string]struct {
	min, max int
	flags    func(fs *flag.FlagSet, inv *invocation, memory *string)
}{
	"new-vm": {1, 1, func(fs *flag.FlagSet, inv *invocation, memory *string) {
		fs.IntVar(&inv.generation, "generation", 0, "")
		fs.StringVar(memory, "memory", "64M", "")
		fs.IntVar(&inv.processors, "processors", 1, "")
		fs.StringVar(&inv.firmware, "firmware", "", "")
		fs.StringVar(&inv.guest, "guest", "", "")
		fs.Var((*listFlag)(&inv.disks), "disk", "")
		fs.Var((*listFlag)(&inv.switches), "switch", "")
	}},
	"get-vm":     {0, 1, nil},
	"start-vm":   {1, 1, nil},
	"stop-vm":    {1, 1, func(fs *flag.FlagSet, inv *invocation, _ *string) { fs.BoolVar(&inv.turnOff, "turn-off", false, "") }},
	"suspend-vm": {1, 1, nil},
	"resume-vm":  {1, 1, nil},
	"remove-vm":  {1, 1, nil},
	"get-vmconsole": {1, 1, func(fs *flag.FlagSet, inv *invocation, _ *string) {
		fs.BoolVar(&inv.follow, "follow", false, "")
	}},
	"console":                  {1, 1, nil},
	"get-job":                  {1, 1, nil},
	"get-vmintegrationservice": {1, 1, nil},
	"get-vmkvp":                {1, 1, nil},
	"set-vmkvp":                {1, 1, func(fs *flag.FlagSet, inv *invocation, _ *string) { fs.Var((*listFlag)(&inv.items), "item", "") }},
	"remove-vmkvp":             {1, 1, func(fs *flag.FlagSet, inv *invocation, _ *string) { fs.Var((*listFlag)(&inv.keys), "key", "") }},
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// globalFlags adds the flags every verb takes, before or after it.
func globalFlags(fs *flag.FlagSet, inv *invocation) {
	fs.StringVar(&inv.server, "server", inv.server, "")
	fs.StringVar(&inv.stateDir, "state-dir", inv.stateDir, "")
	fs.StringVar(&inv.output, "o", inv.output, "")
}

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("hvctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs reads a command line (without the program name). It returns
// errHelp for -h, --help or the verb help, and a *usageError for anything
// it cannot make sense of. Relative paths come back absolute.
func parseArgs(args []string) (*invocation, error) {
	inv := &invocation{output: "table"}
	fs := newFlagSet()
	globalFlags(fs, inv)
	if err := fs.Parse(args); err != nil {
		return nil, flagError(err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return nil, usagef("no verb given")
	}
	inv.verb, rest = rest[0], rest[1:]
	if inv.verb == "help" {
		return nil, errHelp
	}
	v, ok := verbs[inv.verb]
	if !ok {
		return nil, usagef("unknown verb %q", inv.verb)
	}
	fs = newFlagSet()
	globalFlags(fs, inv)
	memory := ""
	if v.flags != nil {
		v.flags(fs, inv, &memory)
	}
	operands, err := parseInterspersed(fs, rest)
	if err != nil {
		return nil, flagError(err)
	}
	if len(operands) < v.min || len(operands) > v.max {
		switch {
		case v.min == v.max:
			return nil, usagef("%s takes %d operand, got %d", inv.verb, v.min, len(operands))
		default:
			return nil, usagef("%s takes at most %d operand, got %d", inv.verb, v.max, len(operands))
		}
	}
	if len(operands) == 1 {
		inv.name = operands[0]
		if inv.name == "" {
			return nil, usagef("%s: empty operand", inv.verb)
		}
	}
	if inv.output != "table" && inv.output != "json" {
		return nil, usagef("-o %q: want table or json", inv.output)
	}
	switch inv.verb {
	case "new-vm":
		if err := inv.checkNewVM(memory); err != nil {
			return nil, err
		}
	case "set-vmkvp":
		if len(inv.items) == 0 {
			return nil, usagef("set-vmkvp needs --item KEY=VALUE")
		}
		for _, it := range inv.items {
			if k, _, ok := strings.Cut(it, "="); !ok || k == "" {
				return nil, usagef("--item %q: want KEY=VALUE", it)
			}
		}
	case "remove-vmkvp":
		if len(inv.keys) == 0 {
			return nil, usagef("remove-vmkvp needs --key KEY")
		}
	}
	return inv, nil
}

func (inv *invocation) checkNewVM(memory string) error {
	if inv.generation != 1 && inv.generation != 2 {
		if inv.generation == 0 {
			return usagef("new-vm needs --generation 1 or 2")
		}
		return usagef("--generation %d: want 1 or 2", inv.generation)
	}
	mb, err := parseMemory(memory)
	if err != nil {
		return usagef("--memory %q: %v", memory, err)
	}
	inv.memoryMB = mb
	if inv.processors < 1 {
		return usagef("--processors %d: want at least 1", inv.processors)
	}
	for _, p := range []*string{&inv.firmware, &inv.guest} {
		if err := absPath(p); err != nil {
			return err
		}
	}
	for i := range inv.disks {
		if err := absPath(&inv.disks[i]); err != nil {
			return err
		}
	}
	for _, s := range inv.switches {
		if s == "" {
			return usagef("--switch: empty switch name")
		}
	}
	return nil
}

// absPath makes *p absolute (vmms has its own working directory).
func absPath(p *string) error {
	if *p == "" {
		return nil
	}
	a, err := filepath.Abs(*p)
	if err != nil {
		return err
	}
	*p = a
	return nil
}

// parseInterspersed parses flags wherever they are among the operands,
// until "--", after which everything is an operand.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(operands, rest...), nil
		}
		if len(rest) == 0 {
			return operands, nil
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
}

// flagError turns the flag package's complaint into a usage error.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	// The flag package names flags with one dash; hvctl's usage uses two.
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = "unknown flag --" + f
	} else if f, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		msg = "flag --" + f + " needs a value"
	} else {
		msg = strings.Replace(msg, " for flag -", " for flag --", 1)
	}
	return &usageError{msg}
}

// memoryRE is a memory size: digits, then an optional binary unit, then
// an optional "B" (or "iB" after a unit).
var memoryRE = regexp.MustCompile(`^(?i)([0-9]+)(?:([KMGT])(i?B)?|B)?$`)

// parseMemory reads a memory size, 64M, 512MiB, 1G or plain bytes, with
// binary units. The size must be a positive whole number of MiB; it
// returns MiB.
func parseMemory(s string) (uint64, error) {
	m := memoryRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("want a whole number with a K, M, G or T suffix, as in 64M or 1G")
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("too large")
	}
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[strings.ToUpper(m[2])]
	if n > (1<<64-1)>>shift {
		return 0, fmt.Errorf("too large")
	}
	bytes := n << shift
	if bytes == 0 {
		return 0, fmt.Errorf("memory must be more than zero")
	}
	if bytes%(1<<20) != 0 {
		return 0, fmt.Errorf("not a whole number of MiB")
	}
	return bytes >> 20, nil
}
