package ptrace

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/platform"
)

// machine makes a ptrace Program over a fresh 4 MiB partition memory.
func machine(t testing.TB) (*program, *guestmem.Memory) {
	t.Helper()
	pl, err := NewPlatform()
	if err != nil {
		t.Fatalf("ptrace platform: %v", err)
	}
	mem, err := guestmem.New("ptrace-test", 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pl.NewProgram(platform.ProgramConfig{Name: "t", Memory: mem})
	if err != nil {
		mem.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
		mem.Close()
	})
	return m.(*program), mem
}

// Code and stack of the test programs: physical pages in the partition,
// mapped at program addresses.
const (
	codeVA, codePA   = 0x400000, 0x200000
	stackVA, stackPA = 0x600000, 0x201000
)

// load writes code at codePA and maps it and a stack page.
func load(t testing.TB, m *program, mem *guestmem.Memory, code []byte) {
	t.Helper()
	if err := mem.WriteAt(code, codePA); err != nil {
		t.Fatal(err)
	}
	m.Map(codeVA, codePA, 4096, platform.ProtRead|platform.ProtExec)
	m.Map(stackVA, stackPA, 4096, platform.ProtRead|platform.ProtWrite)
}

// onThread runs fn on a locked OS thread, as a processor's thread.
func onThread(t testing.TB, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		fn()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("processor thread stuck")
	}
}

func run(t testing.TB, th platform.Thread) platform.Exit {
	t.Helper()
	e, err := th.Run()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return e
}

// TestSystemCallsFaultsAndKicks runs a small program through the exit
// vocabulary: two system calls (the second sees the first's result),
// a page fault on an unmapped page, served by mapping it, an int 0x80
// refused as a #GP, an int3, and a kick out of an endless loop.
func TestSystemCallsFaultsAndKicks(t *testing.T) {
	m, mem := machine(t)
	code := []byte{
		0xB8, 0xE8, 0x03, 0x00, 0x00, // mov eax, 1000
		0xBF, 0x07, 0x00, 0x00, 0x00, // mov edi, 7
		0x0F, 0x05, // syscall
		0x48, 0x89, 0xC7, // mov rdi, rax
		0xB8, 0xE9, 0x03, 0x00, 0x00, // mov eax, 1001
		0x0F, 0x05, // syscall
		0x48, 0xC7, 0x04, 0x25, 0x00, 0x00, 0x80, 0x00, 0x2A, 0x00, 0x00, 0x00, // mov qword [0x800000], 42
		0xCD, 0x80, // int 0x80
	}
	load(t, m, mem, code)
	onThread(t, func() {
		th, err := m.NewThread(1, platform.Regs{RIP: codeVA, RSP: stackVA + 4096, RFLAGS: 0x202})
		if err != nil {
			t.Error(err)
			return
		}
		defer th.Close()
		e := run(t, th)
		if e.Kind != platform.ExitSyscall || e.Nr != 1000 || e.Args[0] != 7 {
			t.Errorf("first exit %+v, want system call 1000(7)", e)
			return
		}
		th.SetReturn(42)
		if e = run(t, th); e.Kind != platform.ExitSyscall || e.Nr != 1001 || e.Args[0] != 42 {
			t.Errorf("second exit %+v, want system call 1001(42)", e)
			return
		}
		th.SetReturn(0)
		e = run(t, th)
		if e.Kind != platform.ExitException || e.Vector != 14 || e.Addr != 0x800000 || e.ErrorCode&platform.PFPresent != 0 {
			t.Errorf("third exit %+v, want a #PF at 0x800000, not present", e)
			return
		}
		m.Map(0x800000, 0x202000, 4096, platform.ProtRead|platform.ProtWrite)
		e = run(t, th)
		// A kernel with 32-bit emulation stops at the call, which the
		// platform refuses as KVM's IDT would (error code 0x402); one
		// without raises the #GP itself.
		if e.Kind != platform.ExitException || e.Vector != 13 {
			t.Errorf("fourth exit %+v, want the #GP of int 0x80", e)
		}
		if b, _ := mem.Slice(0x202000, 8); binary.LittleEndian.Uint64(b) != 42 {
			t.Errorf("the store after the fault did not land in the partition's memory")
		}
	})

	// An int3, then a loop only a kick ends.
	if err := mem.WriteAt([]byte{0xCC, 0xEB, 0xFE}, codePA); err != nil {
		t.Fatal(err)
	}
	onThread(t, func() {
		th, err := m.NewThread(2, platform.Regs{RIP: codeVA, RSP: stackVA + 4096})
		if err != nil {
			t.Error(err)
			return
		}
		defer th.Close()
		if e := run(t, th); e.Kind != platform.ExitException || e.Vector != 3 {
			t.Errorf("int3: %+v", e)
		}
		time.AfterFunc(50*time.Millisecond, th.Kick)
		if e := run(t, th); e.Kind != platform.ExitKicked {
			t.Errorf("loop: %+v, want kicked", e)
		}
	})
}

// TestHypercallPageAndDoorbell: the page's fast HvSignalEvent with a
// doorbell rings its eventfd without an exit; another call reaches the
// shim as a hypercall with Hyper-V's registers, and its status comes
// back in RAX.
func TestHypercallPageAndDoorbell(t *testing.T) {
	m, mem := machine(t)
	const hcPA = 0x203000
	if err := mem.WriteAt(m.HypercallCode(), hcPA); err != nil {
		t.Fatal(err)
	}
	m.Map(platform.HypercallPage, hcPA, 4096, platform.ProtRead|platform.ProtExec)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := m.AddDoorbell(platform.DoorbellPort, 0x2005, efd); err != nil {
		t.Fatal(err)
	}
	code := []byte{
		0x48, 0xC7, 0xC1, 0x5D, 0x00, 0x01, 0x00, // mov rcx, 0x1005D
		0xBA, 0x05, 0x20, 0x00, 0x00, // mov edx, 0x2005
		0x48, 0xB8, 0x00, 0x00, 0x00, 0xFE, 0xFF, 0x7F, 0x00, 0x00, // mov rax, HypercallPage
		0xFF, 0xD0, // call rax
		0x49, 0x89, 0xC4, // mov r12, rax (the doorbell's status)
		0x48, 0xC7, 0xC1, 0x5C, 0x00, 0x00, 0x00, // mov rcx, 0x5C
		0xBA, 0x00, 0x10, 0x00, 0x00, // mov edx, 0x1000
		0x49, 0xC7, 0xC0, 0x00, 0x20, 0x00, 0x00, // mov r8, 0x2000
		0x48, 0xB8, 0x00, 0x00, 0x00, 0xFE, 0xFF, 0x7F, 0x00, 0x00, // mov rax, HypercallPage
		0xFF, 0xD0, // call rax
		0x4D, 0x89, 0xDD, // mov r13, r11
		0x48, 0x89, 0xC7, // mov rdi, rax
		0xB8, 0xE8, 0x03, 0x00, 0x00, // mov eax, 1000
		0x0F, 0x05, // syscall
	}
	load(t, m, mem, code)
	onThread(t, func() {
		th, err := m.NewThread(1, platform.Regs{RIP: codeVA, RSP: stackVA + 4096, R11: 0x1111})
		if err != nil {
			t.Error(err)
			return
		}
		defer th.Close()
		e := run(t, th)
		if e.Kind != platform.ExitHypercall || e.Control != 0x5C || e.Input != 0x1000 || e.Output != 0x2000 {
			t.Errorf("exit %+v, want HvPostMessage(0x1000, 0x2000)", e)
			return
		}
		th.SetReturn(0x13)
		e = run(t, th)
		r, _ := th.Regs()
		if e.Kind != platform.ExitSyscall || e.Args[0] != 0x13 || r.R12 != 0 || r.R13 != 0x1111 {
			t.Errorf("exit %+v, r12 %#x r13 %#x: want the status 0x13 passed on, the doorbell's 0 and R11 kept", e, r.R12, r.R13)
		}
	})
	var buf [8]byte
	if n, err := unix.Read(efd, buf[:]); err != nil || n != 8 || binary.LittleEndian.Uint64(buf[:]) != 1 {
		t.Errorf("doorbell eventfd: %d bytes, %v, count %d", n, err, binary.LittleEndian.Uint64(buf[:]))
	}
	if c := m.Counters()["doorbell_trap"]; c != 1 {
		t.Errorf("doorbells rung by the platform: %d", c)
	}
}

// TestStubIsBare: the stub holds the partition's memory and nothing
// else, maps nothing of the host but its page, runs in its own
// namespaces with a seccomp filter, and is gone once the program closes.
func TestStubIsBare(t *testing.T) {
	m, mem := machine(t)
	load(t, m, mem, []byte{0xEB, 0xFE})
	pid := m.pid
	fds, err := os.ReadDir(filepath.Join("/proc", itoa(pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) != 1 || fds[0].Name() != "0" {
		t.Errorf("stub descriptors %v, want only 0", fds)
	}
	if l, _ := os.Readlink(filepath.Join("/proc", itoa(pid), "fd", "0")); !strings.Contains(l, "ptrace-test") {
		t.Errorf("stub descriptor 0 is %q, want the partition's memfd", l)
	}
	maps, err := mappings(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range maps {
		if r[0] != stubBase && r[0] < 1<<47 {
			t.Errorf("stub maps %#x-%#x", r[0], r[1])
		}
	}
	status, _ := os.ReadFile(filepath.Join("/proc", itoa(pid), "status"))
	if !strings.Contains(string(status), "Seccomp:\t2") || !strings.Contains(string(status), "NoNewPrivs:\t1") {
		t.Errorf("stub without its seccomp filter:\n%s", status)
	}
	if comm, _ := os.ReadFile(filepath.Join("/proc", itoa(pid), "comm")); strings.TrimSpace(string(comm)) != stubName {
		t.Errorf("stub named %q", comm)
	}
	for _, ns := range []string{"pid", "net", "mnt", "ipc", "uts"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		its, _ := os.Readlink(filepath.Join("/proc", itoa(pid), "ns", ns))
		if its == "" || its == mine {
			t.Errorf("stub shares the worker's %s namespace (%q)", ns, its)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/proc", itoa(pid))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stub %d still there after Close: %v", pid, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
