package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"golang.org/x/term"

	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// detachKey is ctrl-], as in telnet and virsh console.
const detachKey = 0x1d

// attach connects the terminal to a partition's COM1 until ctrl-], the
// end of standard input, the partition stopping, or an interrupt.
func (x *cmd) attach(ctx context.Context) error {
	s, err := x.c.GetSystem(ctx, x.name)
	if err != nil {
		return err
	}
	if s.EnabledState == wmiapi.StateOff || s.EnabledState == wmiapi.StateSaved {
		return fmt.Errorf("partition %s is %s", s.ElementName, stateName(s.EnabledState))
	}
	// Start at the end of what the service keeps: a cursor past the end
	// comes back as the end.
	cursor, err := x.c.Console(ctx, s.Name, math.MaxUint64, false, io.Discard)
	if err != nil {
		return err
	}

	if f, ok := x.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		old, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return fmt.Errorf("raw mode: %w", err)
		}
		defer term.Restore(int(f.Fd()), old)
	}
	fmt.Fprintf(x.stderr, "Connected to %s; ctrl-] detaches.\r\n", s.ElementName)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	outDone := make(chan error, 1)
	go func() {
		_, err := x.c.Console(ctx, s.Name, cursor, true, x.stdout)
		outDone <- err
	}()
	inDone := make(chan error, 1)
	go func() { inDone <- x.pumpInput(ctx, s.Name) }()

	select {
	case err = <-outDone:
		if err == nil {
			fmt.Fprintf(x.stderr, "\r\n%s stopped; detached.\r\n", s.ElementName)
		}
	case err = <-inDone:
		if err == nil {
			fmt.Fprintf(x.stderr, "\r\nDetached from %s.\r\n", s.ElementName)
		}
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	// A goroutine blocked reading standard input stays behind; hvctl
	// exits right after.
	return err
}

// pumpInput sends standard input to the guest until ctrl-] or the end of
// input (nil), or an error.
func (x *cmd) pumpInput(ctx context.Context, name string) error {
	buf := make([]byte, 4096)
	for {
		n, rerr := x.stdin.Read(buf)
		data := buf[:n]
		detach := false
		if i := bytes.IndexByte(data, detachKey); i >= 0 {
			data, detach = data[:i], true
		}
		if len(data) > 0 {
			if err := x.c.SendConsole(ctx, name, data); err != nil {
				return err
			}
		}
		if detach || rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
