// Package testguest builds the small guests the root service's tests and
// benchmarks run: boot disks whose MBR (source in testdata, assembled with
// the binutils on the machine) SeaBIOS boots, and flat ROMs.
package testguest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/vsp/disk"
)

// SeaBIOS is Debian's SeaBIOS ROM.
const SeaBIOS = "/usr/share/seabios/bios.bin"

// Strings the console guest prints.
const (
	ConsoleToken  = "CONSOLE-GUEST-READY-5e21"
	SectorTwoText = "SECTOR-TWO-b7d0"
)

// source is the path of testdata/name.S, wherever the test runs.
func source(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", name+".S")
}

// Assemble builds testdata/name.S into a flat 16/32-bit binary linked at
// text.
func Assemble(t testing.TB, name, text string) []byte {
	t.Helper()
	return AssembleFile(t, source(name), text)
}

// ConsoleDisk makes an 8 MiB raw boot disk in dir holding the console
// guest's MBR and, at LBA 2, SectorTwoText. It returns the image path and
// the MBR (which the guest copies to LBA 3).
func ConsoleDisk(t testing.TB, dir string) (string, []byte) {
	t.Helper()
	mbr := Assemble(t, "console", "0x7c00")
	if len(mbr) != 512 {
		t.Fatalf("console MBR is %d bytes", len(mbr))
	}
	img := filepath.Join(dir, "console.raw")
	if err := disk.CreateRaw(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(SectorTwoText+"\r\n\x00"), 2*512); err != nil {
		t.Fatal(err)
	}
	return img, mbr
}

// WorkerROM is the path of the worker's test guest source
// partition/gen1/testdata/name.S, for tests in other packages.
func WorkerROM(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "partition", "gen1", "testdata", name+".S")
}

// AssembleToFile assembles src (linked at text) into a file in a temporary
// directory and returns its path.
func AssembleToFile(t testing.TB, src, text string) string {
	t.Helper()
	b := AssembleFile(t, src, text)
	path := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(src), ".S")+".bin")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// AssembleFile is Assemble for a source anywhere.
func AssembleFile(t testing.TB, src, text string) []byte {
	t.Helper()
	as, ld := testenv.RequireTool(t, "as"), testenv.RequireTool(t, "ld")
	dir := t.TempDir()
	obj, bin := filepath.Join(dir, "guest.o"), filepath.Join(dir, "guest.bin")
	for _, cmd := range [][]string{
		{as, "--32", "-o", obj, src},
		{ld, "-m", "elf_i386", "-Ttext=" + text, "--oformat=binary", "-o", bin, obj},
	} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Gen2Banner is what the Generation 2 test program prints first.
const Gen2Banner = "GEN2-GUEST-READY-9c1e"

// Gen2Program builds testdata/gen2.S as a static x86-64 executable in dir
// and returns its path.
func Gen2Program(t testing.TB, dir string) string { return Static64(t, dir, source("gen2")) }

// Gen2Echo builds partition/gen2/testdata/echo.S (standard input to
// standard output until the input ends) in dir.
func Gen2Echo(t testing.TB, dir string) string {
	_, file, _, _ := runtime.Caller(0)
	return Static64(t, dir, filepath.Join(filepath.Dir(file), "..", "..", "partition", "gen2", "testdata", "echo.S"))
}

// Static64 assembles and links src as a static x86-64 executable in dir.
func Static64(t testing.TB, dir, src string) string {
	t.Helper()
	as, ld := testenv.RequireTool(t, "as"), testenv.RequireTool(t, "ld")
	name := strings.TrimSuffix(filepath.Base(src), ".S")
	obj, bin := filepath.Join(t.TempDir(), name+".o"), filepath.Join(dir, name)
	for _, cmd := range [][]string{{as, "--64", "-o", obj, src}, {ld, "-static", "-o", bin, obj}} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	return bin
}

// GoGuest builds partition/gen2/testdata/goguest, a Go test program (it
// runs goroutines, timers and a 64 MiB allocation, and panics when given
// an argument), as a static executable in dir. It is a module of its own.
func GoGuest(t testing.TB, dir string) string {
	return goProgram(t, dir, "partition/gen2/testdata/goguest", "GOFLAGS=-mod=mod")
}

// Hvguest builds cmd/hvguest, the default Generation 2 guest, into dir
// and returns its path.
func Hvguest(t testing.TB, dir string) string { return GoProgram(t, dir, "cmd/hvguest") }

// GoProgram builds the Go package in pkg (a directory relative to the
// repository's root) as a static Linux executable for a Generation 2
// partition, into dir, and returns its path.
func GoProgram(t testing.TB, dir, pkg string) string { return goProgram(t, dir, pkg) }

func goProgram(t testing.TB, dir, pkg string, env ...string) string {
	t.Helper()
	gotool := testenv.RequireTool(t, "go")
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command(gotool, "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", pkg)
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// SysemuLoop builds partition/platform/ptrace/testdata/sysemu.c, the
// minimal C PTRACE_SYSEMU loop the ptrace platform is measured against,
// and returns a function that runs it for n calls (with tracer and tracee
// pinned to one CPU if pin) and gives the nanoseconds per call. Call it
// from a goroutine whose OS thread is not pinned: the loop inherits the
// thread's CPUs.
func SysemuLoop(t testing.TB) func(n int, pin bool) float64 {
	t.Helper()
	cc := testenv.RequireTool(t, "cc")
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "partition", "platform", "ptrace", "testdata", "sysemu.c")
	bin := filepath.Join(t.TempDir(), "sysemu")
	if out, err := exec.Command(cc, "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	return func(n int, pin bool) float64 {
		args := []string{strconv.Itoa(n)}
		if pin {
			args = append(args, "pin")
		}
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("sysemu: %v", err)
		}
		m := regexp.MustCompile(`(\d+) ns/call`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("sysemu printed %q", out)
		}
		ns, _ := strconv.ParseFloat(string(m[1]), 64)
		return ns
	}
}
