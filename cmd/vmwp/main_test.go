package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/internal/testplatform"
)

// build builds the vmwp binary into a temporary directory.
func build(t *testing.T) string {
	goTool := testenv.RequireTool(t, "go")
	bin := filepath.Join(t.TempDir(), "vmwp")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// run runs bin and returns its standard output, standard error and exit
// code.
func run(t *testing.T, bin string, args ...string) (string, string, int) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// TestVMWP builds the binary and runs the worker's test ROMs through it:
// exit 0 with COM1 on stdout after a power-off, exit 1 with a one-line
// reason after a triple fault.
func TestVMWP(t *testing.T) {
	testplatform.RequireGen1(t)
	bin := build(t)
	rom := func(name string) string { return testguest.AssembleToFile(t, testguest.WorkerROM(name), "0") }
	out, errOut, code := run(t, bin, "--firmware", rom("hello"), "--memory", "64M", "--processors", "2", "--serial", "stdio")
	if code != 0 || out != "Partita tiny ROM\r\n" {
		t.Errorf("hello: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = run(t, bin, "--firmware", rom("triple"), "--memory", "64M", "--serial", "stdio")
	if code == 0 || !strings.Contains(errOut, "triple fault") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("triple: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code = run(t, bin, "--memory", "0M"); code == 0 || errOut == "" {
		t.Errorf("bad flags: exit %d, stderr %q", code, errOut)
	}
}

// TestVMWPProgram runs a Generation 2 program standalone, on the
// platform auto chooses and on ptrace by name: its console on standard
// output, its arguments after --, its exit status as vmwp's; a fault is
// exit 1 with the reason.
func TestVMWPProgram(t *testing.T) {
	testplatform.Gen2(t)
	bin := build(t)
	dir := t.TempDir()
	hello := testguest.Static64(t, dir, filepath.Join("..", "..", "partition", "gen2", "testdata", "hello.S"))
	fault := testguest.Static64(t, dir, filepath.Join("..", "..", "partition", "gen2", "testdata", "fault.S"))
	for _, choice := range []string{"auto", "ptrace"} {
		out, errOut, code := run(t, bin, "--accel", choice, "--program", hello, "--memory", "16M", "--", "one", "two")
		if code != 7 || out != "hello from CPL3\nall checks passed\n" {
			t.Errorf("%s: hello: exit %d, stdout %q, stderr %q", choice, code, out, errOut)
		}
		_, errOut, code = run(t, bin, "--accel", choice, "--program", fault, "--memory", "16M", "--", "ud")
		if code != 1 || !strings.Contains(errOut, "#UD invalid opcode") {
			t.Errorf("%s: fault: exit %d, stderr %q", choice, code, errOut)
		}
	}
	if _, errOut, code := run(t, bin, "--accel", "qemu", "--program", hello); code == 0 || !strings.Contains(errOut, "--accel") {
		t.Errorf("bad --accel: exit %d, stderr %q", code, errOut)
	}
}
