package main

import (
	"os"

	"github.com/partita-hv/partita/partition/vmwp"
	"github.com/partita-hv/partita/root"
)

// isWorker: the root started this process as a partition's worker (it
// re-executes itself with argv[0] "vmwp").
func isWorker() bool { return len(os.Args) > 0 && os.Args[0] == root.WorkerArgv0 }

func workerMain() int { return vmwp.Main(os.Args[1:]) }
