// Command vmwp is Partita's worker process: it runs one Generation 1
// partition on KVM. The root service starts one per running partition; it
// also runs standalone for development and tests:
//
//	vmwp --firmware PATH --disk PATH [--disk PATH] --memory 64M [--processors N] --serial stdio
//
// COM1 goes to standard output. It exits 0 when the guest powers off and
// non-zero with a one-line reason on a triple fault or an internal error.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/partition/worker"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var disks listFlag
	firmware := flag.String("firmware", "", "firmware ROM image (for example /usr/share/seabios/bios.bin)")
	flag.Var(&disks, "disk", "raw disk image (repeatable)")
	mem := flag.String("memory", "64M", "guest memory (K, M or G suffix)")
	cpus := flag.Int("processors", 1, "virtual processors")
	serial := flag.String("serial", "stdio", "where COM1 goes: stdio")
	flag.Parse()
	if err := run(*firmware, disks, *mem, *cpus, *serial); err != nil {
		fmt.Fprintln(os.Stderr, "vmwp:", err)
		os.Exit(1)
	}
}

func run(firmware string, disks []string, mem string, cpus int, serial string) error {
	if firmware == "" {
		return fmt.Errorf("--firmware is required")
	}
	if serial != "stdio" {
		return fmt.Errorf("--serial %q: only stdio is supported", serial)
	}
	size, err := parseSize(mem)
	if err != nil {
		return fmt.Errorf("--memory: %w", err)
	}
	p, err := worker.New(worker.Config{
		Name:       strings.TrimSuffix(filepath.Base(firmware), filepath.Ext(firmware)),
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
	reason := p.Wait()
	if err := p.Close(); err != nil {
		return fmt.Errorf("after %s: %w", reason, err)
	}
	if !reason.PowerOff {
		return fmt.Errorf("%s", reason)
	}
	return nil
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
