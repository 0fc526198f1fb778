package gen2

import (
	"encoding/binary"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/internal/testplatform"
)

// program assembles and links testdata/name.S as a static executable.
func program(t *testing.T, name string) string { return programB(t, name) }

func programB(t testing.TB, name string) string {
	return testguest.Static64(t, t.TempDir(), filepath.Join("testdata", name+".S"))
}

func run(t *testing.T, prog string, args ...string) (Exit, string, *Partition) {
	t.Helper()
	testplatform.Gen2(t)
	var out testenv.Buffer
	p, err := New(Config{Name: "g2", Program: prog, Args: args, Memory: 16 << 20, Console: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Run(), out.String(), p
}

func TestProgramRunsAtCPL3(t *testing.T) {
	exit, out, p := run(t, program(t, "hello"), "one", "two")
	if !exit.Clean || exit.Code != 7 {
		t.Fatalf("exit %+v; console %q", exit, out)
	}
	if out != "hello from CPL3\nall checks passed\n" {
		t.Fatalf("console %q", out)
	}
	if n := p.ENOSYSCounts()[maxCountedSyscall]; n != 1 { // 999: counted with all numbers above the table
		t.Errorf("ENOSYS count for 999 (and the rest above the table): %d", n)
	}
}

func TestProgramFaultsStopThePartition(t *testing.T) {
	prog := program(t, "fault")
	// A read of the doorbell's port: KVM's TSS bitmap lets it through to
	// the worker, which refuses it; without KVM it is the CPU's #GP.
	doorbellRead := "#GP general protection"
	if testplatform.Gen2(t) == "kvm" {
		doorbellRead = "a 1-byte read of port 0x88 outside the hypercall page"
	}
	for _, c := range []struct{ arg, want string }{
		{"kernel", "#PF page fault"},
		{"ud", "#UD invalid opcode"},
		{"io", "#GP general protection"},
		{"doorbell", doorbellRead},
	} {
		exit, _, _ := run(t, prog, c.arg)
		if exit.Clean || !strings.Contains(exit.Message, c.want) || !strings.Contains(exit.Report, "last system calls") {
			t.Errorf("%s: %+v", c.arg, exit)
		}
		t.Logf("%s: %s", c.arg, exit.Message)
	}
	// A bad pointer is the program's error, not a fault.
	if exit, _, _ := run(t, prog, "efault"); !exit.Clean || exit.Code != 14 {
		t.Errorf("efault: %+v", exit)
	}
}

// TestAddressSpaceBeyondMemory: a program reserves 1 GiB in a 16 MiB
// partition, commits and touches part of it; the rest stays unusable.
func TestAddressSpaceBeyondMemory(t *testing.T) {
	prog := program(t, "vm")
	exit, _, p := run(t, prog)
	if !exit.Clean || exit.Code != 0 {
		t.Fatalf("exit %+v", exit)
	}
	// 16 pages touched: 1 to 16 faults (fault-around backs runs), and
	// at least 16 frames taken.
	if n := p.faults.Load(); n < 1 || n > 16 {
		t.Errorf("%d faults served for 16 pages touched", n)
	}
	if p.as.used < 16 {
		t.Errorf("%d frames taken, want at least the 16 touched", p.as.used)
	}
	exit, _, _ = run(t, prog, "touch")
	if exit.Clean || !strings.Contains(exit.Message, "#PF page fault") {
		t.Fatalf("a PROT_NONE page was usable: %+v", exit)
	}
}

// goProgram builds testdata/goguest, a Go program, as a static
// executable (CGO_ENABLED=0), the way Gen2 guests are built.
func goProgram(t *testing.T) string { return testguest.GoGuest(t, t.TempDir()) }

// TestGoProgram: a Go program runs in a Gen2 partition: it sees the
// processors it was given, its runtime's threads are vCPUs, its goroutines
// run under GOMAXPROCS=2, its timers
// sleep in epoll, it allocates and touches 64 MiB; run again with an
// argument, it panics, and the panic's text is on the console with exit
// status 2.
func TestGoProgram(t *testing.T) {
	testplatform.Gen2(t)
	prog := goProgram(t)
	run := func(processors int, args ...string) (Exit, string, *Partition) {
		var out testenv.Buffer
		p, err := New(Config{Name: "go", Program: prog, Args: args, Memory: 256 << 20, Processors: processors, Console: &out})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p.Run(), out.String(), p
	}
	exit, out, p := run(3)
	for _, want := range []string{"processors 3\n", "goroutines done 2999997 2999997\n", "timers done true\n", "allocated 67108864 57\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if !exit.Clean || exit.Code != 0 {
		t.Fatalf("exit %+v; console %q", exit, out)
	}
	t.Logf("%d system calls, %d page faults served, %d frames taken, unserved %v", p.Syscalls(), p.faults.Load(), p.as.used, p.ENOSYSCounts())

	exit, out, _ = run(0, "panic")
	if !exit.Clean || exit.Code != 2 || !strings.Contains(out, "processors 1\n") || !strings.Contains(out, "panic: guest panics on purpose") || !strings.Contains(out, "goroutine 1 [running]") {
		t.Fatalf("panic run: exit %+v; console %q", exit, out)
	}
}

// TestOutOfMemory: a program that touches more than the partition has is
// stopped with that reason; the worker goes on.
func TestOutOfMemory(t *testing.T) {
	exit, _, _ := run(t, program(t, "oom"))
	if exit.Clean || !strings.Contains(exit.Message, "out of memory: the partition's 16 MiB are used up") {
		t.Fatalf("exit %+v", exit)
	}
}

// TestMprotectWidens: a page touched read-only becomes writable after
// mprotect; and 32-bit code (selector 0x23) cannot run, so its
// compatibility-mode syscall never reaches guest kernel mode.
func TestMprotectWidens(t *testing.T) {
	prog := program(t, "prot")
	if exit, _, _ := run(t, prog); !exit.Clean || exit.Code != 0 {
		t.Fatalf("exit %+v", exit)
	}
	exit, _, _ := run(t, prog, "compat")
	if exit.Clean || !strings.Contains(exit.Message, "program fault") {
		t.Fatalf("compat: %+v", exit)
	}
	t.Logf("compat: %s", exit.Message)
}

// TestConsoleInput: what arrives on the console input reaches the
// program's fd 0, slowly or all at once, and its end is read's 0.
func TestConsoleInput(t *testing.T) {
	testplatform.Gen2(t)
	prog := program(t, "echo")
	r, w := io.Pipe()
	var out testenv.Buffer
	p, err := New(Config{Name: "echo", Program: prog, Memory: 16 << 20, Console: &out, ConsoleIn: r})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan Exit, 1)
	go func() { done <- p.Run() }()
	want := "first line\n" + strings.Repeat("x", 100<<10) + "\nlast\n"
	go func() {
		io.WriteString(w, "first line\n")
		time.Sleep(50 * time.Millisecond)
		io.WriteString(w, want[len("first line\n"):])
		w.Close()
	}()
	select {
	case exit := <-done:
		if !exit.Clean || exit.Code != 0 || out.String() != want {
			t.Fatalf("exit %+v; echoed %d bytes of %d", exit, len(out.String()), len(want))
		}
	case <-time.After(30 * time.Second):
		p.Stop("test timeout")
		t.Fatalf("no end; echoed %d bytes", len(out.String()))
	}
}

// TestBadConfig: sizes a partition cannot have are refused by New with a
// clear error, before anything is built.
func TestBadConfig(t *testing.T) {
	prog := program(t, "hello")
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Memory: 3 << 20}, "want 4 MiB to 64 GiB"},
		{Config{Memory: 64<<30 + 2<<20}, "want 4 MiB to 64 GiB"},
		{Config{Memory: 16 << 20, Processors: 65}, "65 processors: want 1 to 64"},
		{Config{Memory: 16 << 20, Processors: -1}, "-1 processors"},
	} {
		c.cfg.Name, c.cfg.Program = "bad", prog
		if p, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			if p != nil {
				p.Close()
			}
			t.Errorf("%+v: got %v, want an error with %q", c.cfg, err, c.want)
		}
	}
}

// TestLargePartitionStaysSparse: a partition of 64 GiB (Hyper-V's most,
// more than these hosts have) runs, its program takes physical pages up
// to the top of its memory and writes the last of them, and the memory
// the host spent on it stays small: untouched pages are never allocated
// or cleared.
func TestLargePartitionStaysSparse(t *testing.T) {
	testplatform.Gen2(t)
	const size = 64 << 30
	var out testenv.Buffer
	p, err := New(Config{Name: "big", Program: program(t, "bigmem"), Args: []string{"65536"}, Memory: size, Console: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	exit := p.Run()
	if !exit.Clean || exit.Code != 0 || len(out.String()) != 8 {
		t.Fatalf("exit %+v; console %q", exit, out.String())
	}
	gpa := binary.LittleEndian.Uint64([]byte(out.String()))
	if gpa < size-(256<<20) || gpa+4096 > size {
		t.Fatalf("the last page taken is at %#x, not near the top of %#x", gpa, uint64(size))
	}
	if v := binary.LittleEndian.Uint64(p.mem.Bytes()[gpa:]); v != 0x5ca1ab1e0ddba11 {
		t.Errorf("guest physical %#x holds %#x", gpa, v)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(p.mem.File().Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 64<<20 {
		t.Errorf("the 64 GiB partition's memory holds %d MiB on the host", used>>20)
	}
	t.Logf("on %s: the page at %#x written; %d KiB of host memory behind the partition", p.Platform(), gpa, st.Blocks/2)
}

// TestHostilePrograms runs testdata/attack.S's attacks on the platform:
// the 32-bit system-call gates, privileged instructions, port I/O, jumps
// into unmapped memory, into the platform's own code and into the
// kernel's vsyscall page, a non-canonical stack, self-modifying code
// (which works), and system calls that would reach beyond the partition
// (fork, exec, ptrace, signals to other processes, files, sockets), which
// must all fail. Each attack ends its own partition with the reason, or
// is refused; the worker goes on to the next.
func TestHostilePrograms(t *testing.T) {
	platform := testplatform.Gen2(t)
	prog := program(t, "attack")
	for _, c := range []struct {
		mode string
		want []string // one of them in the fault's message
	}{
		{"int80", []string{"#GP"}},
		{"sysenter", []string{"#UD", "#GP"}},
		{"hlt", []string{"#GP"}},
		{"cli", []string{"#GP"}},
		{"rdmsr", []string{"#GP"}},
		{"cr3", []string{"#GP"}},
		{"out", []string{"#GP"}},
		{"jump", []string{"#PF page fault at rip 0x5000000000"}},
		{"stub", []string{"#BP", "#PF"}},
		{"vsyscall", []string{"seccomp", "#PF", "#GP"}},
		{"stack", []string{"#SS", "#GP"}},
	} {
		t.Run(c.mode, func(t *testing.T) {
			exit, _, _ := runNamed(t, "attack-"+c.mode, prog)
			ok := false
			for _, w := range c.want {
				ok = ok || strings.Contains(exit.Message, w)
			}
			if exit.Clean || !ok || !strings.HasPrefix(exit.Message, "program fault: ") {
				t.Fatalf("on %s: %+v, want a program fault naming one of %q", platform, exit, c.want)
			}
			t.Logf("%s", exit.Message)
		})
	}
	for _, c := range []struct {
		mode string
		code int
	}{{"smc", 42}, {"procs", 0}} {
		t.Run(c.mode, func(t *testing.T) {
			if exit, _, _ := runNamed(t, "attack-"+c.mode, prog); !exit.Clean || exit.Code != c.code {
				t.Errorf("on %s: %+v, want exit %d", platform, exit, c.code)
			}
		})
	}
}

// runNamed runs prog in a partition of that name (its argv[0]).
func runNamed(t *testing.T, name, prog string) (Exit, string, *Partition) {
	t.Helper()
	var out testenv.Buffer
	p, err := New(Config{Name: name, Program: prog, Memory: 16 << 20, Console: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Run(), out.String(), p
}
