// Command vmwp is Partita's worker process: it runs one Generation 1
// partition on KVM, standalone or under the root service's control socket.
// Everything is in package partition/vmwp, whose documentation
// describes the flags:
//
//	vmwp --firmware PATH --disk PATH [--disk PATH] --memory 64M [--processors N] --serial stdio
//	vmwp --control-fd N --partition NAME
//
// Standalone, COM1 is on standard output and input. It exits 0 when the
// guest powers off and non-zero with a one-line reason on a triple fault
// or an internal error.
package main

import (
	"os"

	"github.com/partita-hv/partita/partition/vmwp"
)

func main() { os.Exit(vmwp.Main(os.Args[1:])) }
