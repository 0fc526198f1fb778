package main

import (
	"fmt"
	"os"

	"github.com/partita-hv/partita/root"
)

// isWorker: the root started this process as a partition's worker.
func isWorker() bool { return len(os.Args) > 0 && os.Args[0] == root.WorkerArgv0 }

func workerMain() int {
	fmt.Fprintln(os.Stderr, "vmwp: the worker is not linked into vmms yet")
	return 1
}
