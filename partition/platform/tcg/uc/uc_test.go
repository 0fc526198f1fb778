package uc

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// recorder is a Hooks that records what the engine asked.
type recorder struct {
	e          *Engine
	outs       []uint32
	mmioWrites []uint64 // addresses
	interrupts []uint32
	romStores  []uint64
	unmapped   []uint64
	cpuid      bool
}

func (r *recorder) In(port uint16, size int) uint32       { return 0x1234 }
func (r *recorder) Out(port uint16, size int, v uint32)   { r.outs = append(r.outs, v) }
func (r *recorder) MMIORead(addr uint64, size int) uint64 { return 0xAABBCCDD }
func (r *recorder) MMIOWrite(addr uint64, size int, v uint64) {
	r.mmioWrites = append(r.mmioWrites, addr)
}
func (r *recorder) Interrupt(vector uint32) {
	r.interrupts = append(r.interrupts, vector)
	r.e.Stop()
}
func (r *recorder) CPUID() bool {
	if r.cpuid {
		r.e.Write(EAX, 0x54524150) // "PART"
	}
	return r.cpuid
}
func (r *recorder) WriteProtected(addr uint64, size int) { r.romStores = append(r.romStores, addr) }
func (r *recorder) Unmapped(write, fetch bool, addr uint64, size int) {
	r.unmapped = append(r.unmapped, addr)
}

// machine is an engine (32-bit, flat) with 64 KiB of RAM at 0, 4 KiB of
// ROM at 0x10000 and 4 KiB of MMIO at 0x20000; code starts at 0x1000.
func machine(t testing.TB, code []byte) (*Engine, *recorder, []byte, []byte) {
	t.Helper()
	mmap := func(n int) []byte {
		b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ram, rom := mmap(0x10000), mmap(0x1000)
	r := &recorder{}
	e, err := Open(r)
	if err != nil {
		t.Fatal(err)
	}
	r.e = e
	t.Cleanup(func() {
		e.Close()
		unix.Munmap(ram)
		unix.Munmap(rom)
	})
	copy(ram[0x1000:], code)
	for _, err := range []error{
		e.MapPtr(0, ram, ProtRead|ProtWrite|ProtExec),
		e.MapPtr(0x10000, rom, ProtRead|ProtExec),
		e.MapMMIO(0x20000, 0x1000),
		e.Write(ESP, 0x8000),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return e, r, ram, rom
}

// A store to ROM reaches WriteProtected and is dropped, even when the
// same block reads the address back; stores to RAM around it land.
func TestROMStoreDropped(t *testing.T) {
	e, r, ram, rom := machine(t, []byte{
		0xC6, 0x05, 0x00, 0x00, 0x01, 0x00, 'Q', // mov byte [0x10000], 'Q'
		0xA0, 0x00, 0x00, 0x01, 0x00, // mov al, [0x10000]
		0x66, 0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0xEE,                                                   // out dx, al
		0xC7, 0x05, 0xFC, 0x0F, 0x01, 0x00, 'A', 'B', 'C', 'D', // mov dword [0x10ffc], "ABCD"
		0xC6, 0x05, 0x00, 0x02, 0x00, 0x00, 'R', // mov byte [0x200], 'R'
		0xF4, // hlt
	})
	rom[0] = 'Z'
	if err := e.Start(0x1000); err != nil {
		t.Fatal(err)
	}
	if len(r.outs) != 1 || r.outs[0] != 'Z' {
		t.Errorf("OUT %#x, want the ROM's 'Z' (0x5a)", r.outs)
	}
	if rom[0] != 'Z' || string(rom[0xFFC:]) != "\x00\x00\x00\x00" {
		t.Errorf("ROM changed: %q, %q", rom[0], rom[0xFFC:])
	}
	if ram[0x200] != 'R' {
		t.Errorf("the store to RAM after them was lost: %q", ram[0x200])
	}
	if len(r.romStores) != 2 || r.romStores[0] != 0x10000 || r.romStores[1] != 0x10FFC {
		t.Errorf("WriteProtected at %#x, want [0x10000 0x10ffc]", r.romStores)
	}
}

// MMIO accesses reach the hooks with their guest physical address.
func TestMMIO(t *testing.T) {
	e, r, _, _ := machine(t, []byte{
		0xA1, 0x10, 0x00, 0x02, 0x00, // mov eax, [0x20010]
		0xA3, 0x24, 0x00, 0x02, 0x00, // mov [0x20024], eax
		0xF4,
	})
	if err := e.Start(0x1000); err != nil {
		t.Fatal(err)
	}
	if eax, _ := e.Read(EAX); eax != 0xAABBCCDD {
		t.Errorf("EAX %#x after an MMIO read, want 0xaabbccdd", eax)
	}
	if len(r.mmioWrites) != 1 || r.mmioWrites[0] != 0x20024 {
		t.Errorf("MMIO writes at %#x, want [0x20024]", r.mmioWrites)
	}
}

// INT n goes to Interrupt; CPUID to the hook; an invalid instruction is
// ErrInvalidInstruction; an access where nothing is mapped, Unmapped.
func TestTraps(t *testing.T) {
	e, r, _, _ := machine(t, []byte{0xCD, 0x21, 0xF4})
	if err := e.Start(0x1000); err != nil {
		t.Fatal(err)
	}
	if len(r.interrupts) != 1 || r.interrupts[0] != 0x21 {
		t.Errorf("interrupts %v, want [33]", r.interrupts)
	}

	e, r, _, _ = machine(t, []byte{0x31, 0xC0, 0x0F, 0xA2, 0xF4}) // xor eax,eax; cpuid; hlt
	r.cpuid = true
	if err := e.Start(0x1000); err != nil {
		t.Fatal(err)
	}
	if eax, _ := e.Read(EAX); eax != 0x54524150 {
		t.Errorf("EAX %#x after CPUID, want the hook's", eax)
	}

	e, _, _, _ = machine(t, []byte{0x0F, 0x0B}) // ud2
	if err := e.Start(0x1000); !errors.Is(err, ErrInvalidInstruction) {
		t.Errorf("ud2: %v, want ErrInvalidInstruction", err)
	}

	e, r, _, _ = machine(t, []byte{0xA1, 0x00, 0x00, 0x00, 0x40, 0xF4}) // mov eax, [0x40000000]
	if err := e.Start(0x1000); err == nil || len(r.unmapped) != 1 || r.unmapped[0] != 0x40000000 {
		t.Errorf("read of 0x40000000: %v, Unmapped %#x", err, r.unmapped)
	}
}

// Kick stops a guest spinning with interrupts off, from another
// goroutine, at once; WantInterruptWindow stops at the first block with
// IF set.
func TestKick(t *testing.T) {
	e, _, _, _ := machine(t, []byte{0xFA, 0xEB, 0xFE}) // cli; jmp $
	done := make(chan error, 1)
	go func() { done <- e.Start(0x1000) }()
	time.Sleep(20 * time.Millisecond)
	kicked := time.Now()
	e.Kick()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if c := e.Stopped(); c != StoppedByKick {
			t.Errorf("stop cause %d, want StoppedByKick", c)
		}
		t.Logf("stopped %v after Kick", time.Since(kicked))
	case <-time.After(5 * time.Second):
		t.Fatal("Kick did not stop a spinning guest")
	}
	e.ClearKick()

	// cli; mov ecx, 1000; loop $; sti; nop; jmp $
	e, _, _, _ = machine(t, []byte{0xFA, 0xB9, 0xE8, 0x03, 0x00, 0x00, 0xE2, 0xFE, 0xFB, 0x90, 0xEB, 0xFE})
	e.WantInterruptWindow(true)
	if err := e.Start(0x1000); err != nil {
		t.Fatal(err)
	}
	flags, _ := e.Read(EFLAGS)
	ecx, _ := e.Read(ECX)
	if flags&(1<<9) == 0 || ecx != 0 {
		t.Errorf("stopped with EFLAGS %#x ECX %d, want IF set after the loop", flags, ecx)
	}
	if c := e.Stopped(); c != StoppedAtIRQOn {
		t.Errorf("stop cause %d, want StoppedAtIRQOn", c)
	}
	// HLT: no cause.
	e, _, _, _ = machine(t, []byte{0xF4})
	if err := e.Start(0x1000); err != nil || e.Stopped() != NotStopped {
		t.Errorf("HLT: %v, stop cause %d", err, e.Stopped())
	}
}

// BenchmarkGuestStore runs a guest loop of byte stores to RAM beside the
// same loop with the store replaced by a register move, and reports the
// cost of one store. (Unicorn 2.0.1 has no dirty-memory tracking: every
// store to RAM takes TCG's slow path, through its code-invalidation
// check, where QEMU's TCG takes a few host instructions.)
//
//	go test -run '^$' -bench GuestStore ./partition/platform/tcg/uc
func BenchmarkGuestStore(b *testing.B) {
	const n = 1 << 20
	// mov ecx, n; 1: mov [edi+0x8000], al | mov edx, eax (padded to the
	// same length); inc edi; and edi, 0x7fff; dec ecx; jnz 1b; hlt. The
	// stores stay away from the code at 0x1000.
	loop := func(body []byte) []byte {
		code := []byte{0xB9, 0x00, 0x00, 0x10, 0x00}
		code = append(code, body...)
		code = append(code, 0x47, 0x81, 0xE7, 0xFF, 0x7F, 0x00, 0x00, 0x49, 0x75, byte(-(len(body) + 10)), 0xF4)
		return code
	}
	per := func(code []byte) float64 {
		e, _, _, _ := machine(b, code)
		t0 := time.Now()
		for i := 0; i < b.N; i++ {
			e.Write(EDI, 0)
			if err := e.Start(0x1000); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(t0).Nanoseconds()) / float64(b.N*n)
	}
	store := per(loop([]byte{0x88, 0x87, 0x00, 0x80, 0x00, 0x00}))    // mov [edi+0x8000], al
	register := per(loop([]byte{0x89, 0xC2, 0x90, 0x90, 0x90, 0x90})) // mov edx, eax; 4 nops
	b.ReportMetric(store, "ns/iteration-with-store")
	b.ReportMetric(register, "ns/iteration-without")
}

// TestDropCode: code the host rewrites behind the engine runs stale
// until its translation is dropped.
func TestDropCode(t *testing.T) {
	// mov $0x41, %al; out %al, $0x80; hlt
	e, r, ram, _ := machine(t, []byte{0xB0, 'A', 0xE6, 0x80, 0xF4})
	run := func() uint32 {
		t.Helper()
		if err := e.Start(0x1000); err != nil {
			t.Fatal(err)
		}
		return r.outs[len(r.outs)-1]
	}
	if v := run(); v != 'A' {
		t.Fatalf("first run wrote %#x", v)
	}
	ram[0x1001] = 'B' // the host rewrites the immediate
	if v := run(); v != 'A' {
		t.Logf("the engine saw the host's write without DropCode (%#x)", v)
	}
	if err := e.DropCode(0x1001); err != nil {
		t.Fatal(err)
	}
	if v := run(); v != 'B' {
		t.Errorf("after DropCode the engine wrote %#x, want 'B'", v)
	}
}

// TestContexts: two processor states take turns on one engine.
func TestContexts(t *testing.T) {
	// inc %eax; hlt
	e, _, _, _ := machine(t, []byte{0x40, 0xF4})
	a, err := e.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	b, _ := e.NewContext()
	defer b.Free()
	e.Write(EAX, 100)
	e.Save(a)
	e.Write(EAX, 200)
	e.Save(b)
	for i := 0; i < 3; i++ {
		for _, c := range []*Context{a, b} {
			if err := e.Restore(c); err != nil {
				t.Fatal(err)
			}
			if err := e.Start(0x1000); err != nil {
				t.Fatal(err)
			}
			e.Save(c)
		}
	}
	e.Restore(a)
	va, _ := e.Read(EAX)
	e.Restore(b)
	vb, _ := e.Read(EAX)
	if va != 103 || vb != 203 {
		t.Errorf("EAX %d and %d after three turns each, want 103 and 203", va, vb)
	}
}
