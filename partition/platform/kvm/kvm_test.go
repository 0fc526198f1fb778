package kvm

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/guestmem"
)

// TestLayouts checks the mirror structs against <linux/kvm.h> on x86-64.
func TestLayouts(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), 144},
		{"kvm_segment", unsafe.Sizeof(Segment{}), 24},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), 16},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), 312},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), 416},
		{"kvm_msr_entry", unsafe.Sizeof(MSR{}), 16},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), 40},
		{"kvm_userspace_memory_region", unsafe.Sizeof(userspaceMemoryRegion{}), 32},
		{"kvm_ioeventfd", unsafe.Sizeof(ioeventfd{}), 64},
		{"kvm_irqfd", unsafe.Sizeof(irqfd{}), 32},
		{"kvm_pit_config", unsafe.Sizeof(pitConfig{}), 64},
		{"kvm_sregs.gdt", unsafe.Offsetof(Sregs{}.GDT), 192},
		{"kvm_sregs.cr0", unsafe.Offsetof(Sregs{}.CR0), 224},
		{"kvm_sregs.efer", unsafe.Offsetof(Sregs{}.EFER), 264},
		{"kvm_sregs.interrupt_bitmap", unsafe.Offsetof(Sregs{}.InterruptBitmap), 280},
		{"kvm_segment.unusable", unsafe.Offsetof(Segment{}.Unusable), 22},
		{"kvm_ioeventfd.flags", unsafe.Offsetof(ioeventfd{}.Flags), 24},
		{"kvm_cpuid_entry2.eax", unsafe.Offsetof(CPUIDEntry{}.EAX), 12},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, kernel has %d", c.name, c.got, c.want)
		}
	}
}

// requireKVM opens /dev/kvm or skips: tests that need KVM run wherever it
// is present.
func requireKVM(t testing.TB) *System {
	t.Helper()
	s, err := Open()
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no usable /dev/kvm on this machine: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// realModeGuest is a VM with 1 MiB of memfd RAM, one vCPU in real mode at
// 0000:1000, and code placed there. Test guests end by writing donePort:
// with the in-kernel irqchip, HLT is handled inside KVM (the vCPU sleeps
// until an interrupt) and never exits to user space.
const donePort = 0xD0

var done = []byte{0xE6, donePort} // out donePort, al
type realModeGuest struct {
	vm   *VM
	vcpu *VCPU
	mem  *guestmem.Memory
}

func newRealModeGuest(t testing.TB, code []byte) *realModeGuest {
	t.Helper()
	sys := requireKVM(t)
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	if err := vm.PlatformDefaults(); err != nil {
		t.Fatal(err)
	}
	mem, err := guestmem.New(t.Name(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	if err := vm.SetMemory(0, 0, mem.Bytes(), 0); err != nil {
		t.Fatal(err)
	}
	copy(mem.Bytes()[0x1000:], code)
	vcpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	sregs, err := vcpu.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	if err := vcpu.SetSregs(sregs); err != nil {
		t.Fatal(err)
	}
	if err := vcpu.SetRegs(Regs{RIP: 0x1000, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	return &realModeGuest{vm: vm, vcpu: vcpu, mem: mem}
}

// runUntil runs the vCPU on a locked thread until an exit other than
// ExitKicked, with a deadline.
func (g *realModeGuest) runUntil(t testing.TB) ExitReason { return g.runUntilKicked(t, nil) }

// runUntilKicked is runUntil, except that once kicked is closed an
// ExitKicked ends the run too. (The Go runtime's own preemption signals
// also end runs with ExitKicked, so only a kick the test made counts.)
func (g *realModeGuest) runUntilKicked(t testing.TB, kicked <-chan struct{}) ExitReason {
	t.Helper()
	type res struct {
		r   ExitReason
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for {
			r, err := g.vcpu.Run()
			if err != nil || r != ExitKicked {
				c <- res{r, err}
				return
			}
			select {
			case <-kicked:
				c <- res{r, nil}
				return
			default:
			}
		}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.r
	case <-time.After(10 * time.Second):
		g.vcpu.Kick()
		t.Fatal("guest did not exit within 10 s")
	}
	return 0
}

func TestPortIO(t *testing.T) {
	g := newRealModeGuest(t, []byte{
		0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0xB0, 'H', // mov al, 'H'
		0xEE,      // out dx, al
		0xB0, 'i', // mov al, 'i'
		0xEE,       // out dx, al
		0xEC,       // in al, dx
		0xEE,       // out dx, al (echo what IN read)
		0x66, 0xED, // in eax, dx (32-bit)
		done[0], done[1],
	})
	var out []byte
	for step := 0; ; step++ {
		r := g.runUntil(t)
		if r != ExitIO {
			t.Fatalf("step %d: exit %v (word %#x)", step, r, g.vcpu.ExitWord())
		}
		io := g.vcpu.IO()
		if io.Port == donePort {
			break
		}
		if io.Port != 0x3F8 || io.Count != 1 {
			t.Fatalf("io %+v", io)
		}
		switch {
		case io.In && io.Size == 1:
			io.Data[0] = 'Z'
		case io.In && io.Size == 4:
			binary.LittleEndian.PutUint32(io.Data, 0xCAFEF00D)
		default:
			out = append(out, io.Data[0])
		}
	}
	if string(out) != "HiZ" {
		t.Errorf("guest wrote %q, want HiZ", out)
	}
	regs, err := g.vcpu.Regs()
	if err != nil {
		t.Fatal(err)
	}
	if uint32(regs.RAX) != 0xCAFEF00D {
		t.Errorf("eax %#x after 32-bit IN", regs.RAX)
	}
}

func TestIOEventFDWithoutExit(t *testing.T) {
	g := newRealModeGuest(t, []byte{
		0xBA, 0x00, 0x05, // mov dx, 0x500
		0xB0, 7, // mov al, 7
		0xEE,    // out dx, al   (matches: no exit)
		0xB0, 8, // mov al, 8
		0xEE, // out dx, al   (no match: exit)
		done[0], done[1],
	})
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	seven := uint64(7)
	if err := g.vm.IOEventFD(efd, 0x500, 1, true, &seven, false); err != nil {
		t.Fatal(err)
	}
	if r := g.runUntil(t); r != ExitIO || g.vcpu.IO().Data[0] != 8 {
		t.Fatalf("first exit %v %+v, want the unmatched write of 8", r, g.vcpu.IO())
	}
	var b [8]byte
	if _, err := unix.Read(efd, b[:]); err != nil || binary.LittleEndian.Uint64(b[:]) != 1 {
		t.Fatalf("eventfd: %v %v", b, err)
	}
	if err := g.vm.IOEventFD(efd, 0x500, 1, true, &seven, true); err != nil {
		t.Errorf("deassign: %v", err)
	}
	if r := g.runUntil(t); r != ExitIO || g.vcpu.IO().Port != donePort {
		t.Errorf("then %v %+v", r, g.vcpu.IO())
	}
}

func TestKick(t *testing.T) {
	g := newRealModeGuest(t, []byte{0xEB, 0xFE}) // jmp $
	kicked := make(chan struct{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(kicked)
		g.vcpu.Kick()
	}()
	if r := g.runUntilKicked(t, kicked); r != ExitKicked {
		t.Errorf("exit %v, want kicked", r)
	}
}

func TestIRQFDAndLine(t *testing.T) {
	g := newRealModeGuest(t, done)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := g.vm.IRQFD(efd, 4, false); err != nil {
		t.Fatal(err)
	}
	if err := g.vm.IRQFD(efd, 4, false); err == nil {
		t.Error("second registration of one eventfd accepted")
	}
	if err := g.vm.IRQFD(efd, 4, true); err != nil {
		t.Errorf("deassign: %v", err)
	}
	if err := g.vm.IRQLine(4, true); err != nil {
		t.Error(err)
	}
	if err := g.vm.IRQLine(4, false); err != nil {
		t.Error(err)
	}
}

func TestCPUIDAndMSRs(t *testing.T) {
	sys := requireKVM(t)
	entries, err := sys.SupportedCPUID()
	if err != nil || len(entries) == 0 {
		t.Fatalf("supported cpuid: %d entries, %v", len(entries), err)
	}
	g := newRealModeGuest(t, done)
	if err := g.vcpu.SetCPUID(entries); err != nil {
		t.Fatal(err)
	}
	const msrSysenterCS = 0x174
	if err := g.vcpu.SetMSRs([]MSR{{Index: msrSysenterCS, Data: 0x10}}); err != nil {
		t.Fatal(err)
	}
	got := []MSR{{Index: msrSysenterCS}}
	if err := g.vcpu.MSRs(got); err != nil || got[0].Data != 0x10 {
		t.Errorf("read back %+v %v", got, err)
	}
	if err := g.vcpu.SetMSRs([]MSR{{Index: 0xDEAD0000, Data: 1}}); err == nil {
		t.Error("unknown MSR accepted")
	}
}

// BenchmarkPortIOExit measures round trips through user space: the guest
// loops on OUT, every OUT exits to Run's caller.
func BenchmarkPortIOExit(b *testing.B) {
	g := newRealModeGuest(b, []byte{
		0xBA, 0x80, 0x00, // mov dx, 0x80
		0xEE,       // out dx, al
		0xEB, 0xFD, // jmp back to out
	})
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; {
		r, err := g.vcpu.Run()
		if err != nil {
			b.Fatal(err)
		}
		if r == ExitIO {
			i++
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "exits/s")
}

// TestSyncRegs: with sync regs on, the registers read at an exit are the
// ioctl's, and registers written go in at the next Run.
func TestSyncRegs(t *testing.T) {
	g := newRealModeGuest(t, []byte{
		0xBA, 0x80, 0x00, // mov dx, 0x80
		0xEE, // out dx, al
		0xEE, // out dx, al (again, with the AL the host set)
		0xF4, // hlt
	})
	if !g.vcpu.EnableSyncRegs() {
		t.Skip("KVM_CAP_SYNC_REGS without KVM_SYNC_X86_REGS")
	}
	if r := g.runUntil(t); r != ExitIO {
		t.Fatalf("exit %v", r)
	}
	synced, err := g.vcpu.Regs()
	if err != nil {
		t.Fatal(err)
	}
	g.vcpu.regsInRun = false
	viaIoctl, err := g.vcpu.Regs()
	g.vcpu.regsInRun = true
	if err != nil || synced != viaIoctl {
		t.Fatalf("synced %+v, ioctl %+v (%v)", synced, viaIoctl, err)
	}
	if synced.RDX&0xFFFF != 0x80 {
		t.Errorf("RDX %#x", synced.RDX)
	}
	synced.RAX = 0x5A
	if err := g.vcpu.SetRegs(synced); err != nil {
		t.Fatal(err)
	}
	if r := g.runUntil(t); r != ExitIO {
		t.Fatalf("exit %v", r)
	}
	if io := g.vcpu.IO(); len(io.Data) != 1 || io.Data[0] != 0x5A {
		t.Errorf("the guest wrote %x, want the 5a the host set", io.Data)
	}
}
