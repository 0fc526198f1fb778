// Package proctitle rewrites, in place, an argument the process was started
// with, so that ps and /proc/PID/cmdline show a value learnt after exec: a
// spare worker, started before it knows its partition, shows the
// partition's name once it has one. The argument must have been given a
// placeholder at least as long as any value written into it.
package proctitle

import (
	"fmt"
	"os"
	"unsafe"
)

// Set overwrites os.Args[i] in the process's original argument memory
// with value, padding the rest of the placeholder with NUL bytes.
// os.Args[i] itself is left as it was (Go strings are immutable: the
// runtime's copy of the argument is the memory written here, so only the
// kernel's view, cmdline, should be read afterwards).
func Set(i int, value string) error {
	if i <= 0 || i >= len(os.Args) {
		return fmt.Errorf("proctitle: no argument %d", i)
	}
	arg := os.Args[i]
	if len(value) > len(arg) {
		return fmt.Errorf("proctitle: %q is longer than its placeholder (%d bytes)", value, len(arg))
	}
	// SAFETY: the Go runtime builds os.Args from the argv strings the
	// kernel placed on the initial stack without copying them; that
	// memory is writable, and this writes only within the argument's
	// own bytes.
	b := unsafe.Slice(unsafe.StringData(arg), len(arg))
	n := copy(b, value)
	clear(b[n:])
	return nil
}
