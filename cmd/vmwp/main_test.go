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
	"github.com/partita-hv/partita/partition/platform/kvm"
)

// TestVMWP builds the binary and runs the worker's test ROMs through it:
// exit 0 with COM1 on stdout after a power-off, exit 1 with a one-line
// reason after a triple fault.
func TestVMWP(t *testing.T) {
	if s, err := kvm.Open(); err != nil {
		t.Skipf("no usable /dev/kvm: %v", err)
	} else {
		s.Close()
	}
	goTool := testenv.RequireTool(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "vmwp")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	rom := func(name string) string { return testguest.AssembleToFile(t, testguest.WorkerROM(name), "0") }
	run := func(args ...string) (string, string, int) {
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
	out, errOut, code := run("--firmware", rom("hello"), "--memory", "64M", "--processors", "2", "--serial", "stdio")
	if code != 0 || out != "Partita tiny ROM\r\n" {
		t.Errorf("hello: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = run("--firmware", rom("triple"), "--memory", "64M", "--serial", "stdio")
	if code == 0 || !strings.Contains(errOut, "triple fault") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("triple: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code = run("--memory", "0M"); code == 0 || errOut == "" {
		t.Errorf("bad flags: exit %d, stderr %q", code, errOut)
	}
}
