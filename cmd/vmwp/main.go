// Command vmwp is Partita's worker process: it runs one partition, a
// Generation 1 PC or a Generation 2 program, on the platform --accel
// chooses (KVM, or ptrace for programs where there is no KVM), standalone
// or under the root service's control socket. Everything is in package
// partition/vmwp, whose documentation describes the flags:
//
//	vmwp --firmware PATH --disk PATH [--disk PATH] --memory 64M [--processors N] [--accel A] --serial stdio
//	vmwp --program PATH --memory 64M [--processors N] [--accel A] [-- ARGS...]
//	vmwp --control-fd N --partition NAME [--accel A]
//
// Standalone, a PC's COM1 is on standard output and input; it exits 0 when
// the guest powers off and non-zero with a one-line reason on a triple
// fault or an internal error. A program's console is standard output and
// input, and vmwp exits with the program's status.
package main

import (
	"os"

	"github.com/partita-hv/partita/partition/vmwp"
)

func main() { os.Exit(vmwp.Main(os.Args[1:])) }
