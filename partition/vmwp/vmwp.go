// Package vmwp is the worker process's program: one partition of either
// generation, on the platform --accel chooses (package partition/accel),
// run standalone for development and tests, or under the root service's
// control. The vmwp binary's main is Main; the root service (vmms)
// re-executes itself with argv[0] "vmwp" and calls Main too.
//
// Standalone, a Generation 1 PC or a Generation 2 program:
//
//	vmwp --firmware PATH --disk PATH [--disk PATH] --memory 64M [--processors N] [--accel A] --serial stdio [--partition NAME]
//	vmwp --program PATH --memory 64M [--processors N] [--accel A] [-- ARGS...]
//
// A PC's COM1 output goes to standard output and standard input feeds
// COM1's receive side; Main returns 0 when the guest powers off, 1 with a
// one-line reason on standard error on a triple fault, any other stop, an
// error or a bad flag value, and 2 for flags that do not parse. A
// program's console is standard output and input, and Main returns its
// exit status (1 with a reason if it faulted).
//
// Controlled, started by the root service:
//
//	vmwp --control-fd N --partition NAME [--accel A]
//
// The worker opens the platforms --accel gives each generation (and makes
// a PC ahead on KVM) before the start request comes, so that a start waits
// for neither; the reply to the start names the platform.
//
// N is the worker's end of a control socket (package partition/control),
// an inherited descriptor. The first record must be a start request
// carrying the partition's guest-memory memfd; the partition is built from
// it and the reply says whether that worked (Main returns 1 if not). Then
// the worker serves pause, resume, turn-off, power-button and stats
// requests, replying to each with its sequence number. COM1 is standard
// output and standard input, as standalone; logs are JSON lines (hclog) on
// standard error. When the partition stops, the worker flushes and closes
// its disks, sends one stopped record and returns 0, whatever the reason
// (the record says it). If the control socket reaches end of file or
// fails, the root is gone: the worker stops the partition ("root service
// went away"), flushes, and returns 1. That is what keeps a worker from
// outliving its root.
//
// NAME only labels the process: ps shows "vmwp:NAME" (truncated to the
// kernel's 15 bytes) as its command name, and the arguments show it whole.
package vmwp

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/internal/proctitle"
	"github.com/partita-hv/partita/partition/accel"
	"github.com/partita-hv/partita/partition/control"
	"github.com/partita-hv/partita/partition/gen1"
	"github.com/partita-hv/partita/partition/gen2"
)

// Exit codes.
const (
	exitOK    = 0 // standalone: the guest powered off; controlled: the stop was reported
	exitError = 1 // standalone: any other stop, or an error; controlled: could not start or report
	exitUsage = 2 // flags that do not parse, as Go's flag package exits
)

// Reasons the worker gives when it stops the partition itself.
const (
	ReasonTurnedOff = "turned off"
	ReasonRootGone  = "root service went away"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// Main runs the worker with the given arguments (without the program
// name) and returns the process's exit code. It is meant to be the whole
// life of a process: it uses the process's standard streams, ignores
// SIGPIPE in controlled mode (so that a vanished reader of standard output
// is an error, not death before the disks are flushed), and may leave a
// goroutine blocked reading standard input when it returns, for the
// caller's os.Exit to end.
func Main(args []string) int {
	fs := flag.NewFlagSet("vmwp", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	var disks listFlag
	firmware := fs.String("firmware", "", "firmware ROM image (for example /usr/share/seabios/bios.bin)")
	fs.Var(&disks, "disk", "raw disk image (repeatable)")
	mem := fs.String("memory", "64M", "guest memory (K, M or G suffix)")
	cpus := fs.Int("processors", 1, "virtual processors")
	serial := fs.String("serial", "stdio", "where COM1 goes: stdio")
	program := fs.String("program", "", "a Generation 2 program (a static x86-64 executable) to run instead of firmware; arguments after --")
	choice := fs.String("accel", accel.Auto, "the platform: "+strings.Join(accel.Choices, ", ")+" (auto: KVM where /dev/kvm opens, else the generation's software platform)")
	controlFD := fs.Int("control-fd", -1, "inherited descriptor of the control socket: run under the root service")
	name := fs.String("partition", "", "the partition's name, to label the process")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "vmwp: "+format+"\n", a...)
		return exitError
	}
	if fs.NArg() > 0 && *program == "" {
		return usage("unexpected arguments %q", fs.Args())
	}
	if err := accel.Check(*choice); err != nil {
		return usage("--accel: %v", err)
	}
	if *serial != "stdio" {
		return usage("--serial %q: only stdio is supported", *serial)
	}
	// The flag's value shares memory with the process's arguments, which
	// a spare worker rewrites once it learns its partition's name.
	label := strings.Clone(*name)
	var nameErr error // only the label is lost; logged in controlled mode
	if label != "" && !control.IsSpare(label) {
		nameErr = setProcessName("vmwp:" + label)
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["control-fd"] {
		if *controlFD < 0 {
			return usage("--control-fd %d: want a descriptor number", *controlFD)
		}
		var standalone []string
		for _, f := range []string{"firmware", "program", "disk", "memory", "processors"} {
			if set[f] {
				standalone = append(standalone, "--"+f)
			}
		}
		if len(standalone) > 0 {
			return usage("%s: under --control-fd the root service's start request describes the partition", strings.Join(standalone, ", "))
		}
		return runControlled(*controlFD, label, *choice, nameErr)
	}
	if (*firmware == "") == (*program == "") {
		return usage("one of --firmware (Generation 1) and --program (Generation 2) is required")
	}
	size, err := parseSize(*mem)
	if err != nil {
		return usage("--memory: %v", err)
	}
	if *program != "" {
		return runProgram(*program, fs.Args(), size, *cpus, *name, *choice)
	}
	if err := runStandalone(*firmware, disks, size, *cpus, *name, *choice); err != nil {
		fmt.Fprintln(os.Stderr, "vmwp:", err)
		return exitError
	}
	return exitOK
}

// runStandalone runs until the partition stops; an error unless the guest
// powered off.
func runStandalone(firmware string, disks []string, size uint64, cpus int, name, choice string) error {
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(firmware), filepath.Ext(firmware))
	}
	pl, err := accel.Open(choice, 1)
	if err != nil {
		return err
	}
	defer pl.Close()
	p, err := gen1.New(gen1.Config{
		Platform:   pl,
		Name:       name,
		Firmware:   firmware,
		Disks:      disks,
		Memory:     size,
		Processors: cpus,
		Serial:     os.Stdout,
		Logger:     hclog.New(&hclog.LoggerOptions{Name: "vmwp", Output: os.Stderr, Level: hclog.Warn}),
	})
	if err != nil {
		return err
	}
	p.Start()
	go p.ConsoleInput(os.Stdin)
	reason := p.Wait()
	if err := p.Close(); err != nil {
		return fmt.Errorf("after %s: %w", reason, err)
	}
	if !reason.PowerOff {
		return fmt.Errorf("%s", reason)
	}
	return nil
}

// runProgram runs a Generation 2 program with the console on standard
// output and input, and returns its exit status.
func runProgram(program string, args []string, size uint64, cpus int, name, choice string) int {
	if name == "" {
		name = filepath.Base(program)
	}
	pl, err := accel.Open(choice, 2)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmwp:", err)
		return exitError
	}
	defer pl.Close()
	p, err := gen2.New(gen2.Config{Name: name, Program: program, Args: args, Memory: size, Processors: cpus,
		Console: os.Stdout, ConsoleIn: os.Stdin, Platform: pl,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "vmwp", Output: os.Stderr, Level: hclog.Warn})})
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmwp:", err)
		return exitError
	}
	exit := p.Run()
	p.Close()
	if !exit.Clean {
		fmt.Fprintln(os.Stderr, "vmwp:", exit.Message)
		if exit.Report != "" {
			fmt.Fprintln(os.Stderr, exit.Report)
		}
		return exitError
	}
	return exit.Code
}

// parseSize reads 64M, 1G, 512K or plain bytes.
func parseSize(s string) (uint64, error) {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// nameSpare writes the partition's name over a spare worker's
// placeholder, so that ps shows it, and makes it the command name.
func nameSpare(name string) error {
	for i := 1; i+1 < len(os.Args); i++ {
		if (os.Args[i] == "--partition" || os.Args[i] == "-partition") && control.IsSpare(os.Args[i+1]) {
			if err := proctitle.Set(i+1, name); err != nil {
				return err
			}
			break
		}
	}
	return setProcessName("vmwp:" + name)
}

// maxComm is the longest command name the kernel keeps (TASK_COMM_LEN
// less the NUL).
const maxComm = 15

// setProcessName makes ps show name as the command, cut to 15 bytes on a
// UTF-8 boundary. ps shows the main thread's name, and Main may run on any
// thread, so this writes /proc/self/comm (the thread-group leader's name,
// which any of its threads may set) rather than calling
// prctl(PR_SET_NAME), which names only the calling thread and would need
// unsafe to pass the string. Failure only costs the label.
func setProcessName(name string) error {
	return os.WriteFile("/proc/self/comm", []byte(truncateComm(name)), 0)
}

// truncateComm drops NULs and cuts name to maxComm bytes without
// splitting a UTF-8 sequence.
func truncateComm(name string) string {
	name = strings.ReplaceAll(name, "\x00", "")
	for len(name) > maxComm {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	return name
}
