package gen1

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/partita-hv/partita/vsp/disk"
)

// Modes of FuzzRandomCode: the random bytes run as real-mode code, or as
// 32-bit protected-mode code with flat segments.
const (
	modeReal      = 0
	modeProtected = 1
)

// The prologue's places in the 64 KiB ROM (at 0xF0000): the random code
// at offset 0, the real-mode entry, the 32-bit entry and the GDT after it.
const (
	romCodeMax  = 0xE000
	romEntry16  = 0xE000
	romEntry32  = 0xE100
	romGDT      = 0xE200
	romGDTR     = 0xE220
	romBase     = 0xF0000
	fuzzRunTime = 50 * time.Millisecond
)

// randomCodeROM builds a ROM that runs code (at most romCodeMax bytes)
// in the mode from the reset vector, with a stack at 0x7000.
func randomCodeROM(mode byte, code []byte) []byte {
	rom := make([]byte, 0x10000)
	copy(rom, code[:min(len(code), romCodeMax)])
	le := binary.LittleEndian
	e := rom[romEntry16:]
	// cli; xor ax, ax; mov ss, ax; mov sp, 0x7000
	n := copy(e, []byte{0xFA, 0x31, 0xC0, 0x8E, 0xD0, 0xBC, 0x00, 0x70})
	if mode%2 == modeReal {
		copy(e[n:], []byte{0xEA, 0x00, 0x00, 0x00, 0xF0}) // jmp far f000:0000
	} else {
		// lgdt cs:[romGDTR]; mov eax, cr0; or al, 1; mov cr0, eax;
		// jmp far dword 0x08:romBase+romEntry32
		n += copy(e[n:], []byte{0x2E, 0x0F, 0x01, 0x16, romGDTR & 0xFF, romGDTR >> 8,
			0x0F, 0x20, 0xC0, 0x0C, 0x01, 0x0F, 0x22, 0xC0, 0x66, 0xEA})
		le.PutUint32(e[n:], romBase+romEntry32)
		le.PutUint16(e[n+4:], 0x08)
		// 32-bit: mov ax, 0x10; mov ds/es/ss/fs/gs, ax; mov esp, 0x7000;
		// mov eax, romBase; jmp eax
		s := rom[romEntry32:]
		m := copy(s, []byte{0x66, 0xB8, 0x10, 0x00, 0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0, 0x8E, 0xE0, 0x8E, 0xE8,
			0xBC, 0x00, 0x70, 0x00, 0x00, 0xB8})
		le.PutUint32(s[m:], romBase)
		copy(s[m+4:], []byte{0xFF, 0xE0})
		le.PutUint64(rom[romGDT+8:], 0x00CF9A000000FFFF)  // flat 32-bit code
		le.PutUint64(rom[romGDT+16:], 0x00CF92000000FFFF) // flat data
		le.PutUint16(rom[romGDTR:], 3*8-1)
		le.PutUint32(rom[romGDTR+2:], romBase+romGDT)
	}
	// The reset vector: jmp far f000:romEntry16.
	copy(rom[0xFFF0:], []byte{0xEA, romEntry16 & 0xFF, romEntry16 >> 8, 0x00, 0xF0})
	return rom
}

// FuzzRandomCode runs random bytes as a partition's code, real mode or
// protected mode, with every device attached (COM1, a disk, the chipset),
// for a bounded time. The worker must not panic; the partition must end
// when asked (no hang), or on its own with a reason (a triple fault, a
// reset, a power-off).
func FuzzRandomCode(f *testing.F) {
	requireKVM(f)
	f.Add(byte(modeReal), []byte{0xF4})                        // hlt, IF=0
	f.Add(byte(modeReal), []byte{0xCD, 0x03, 0xEB, 0xFE})      // int 3 through a zero IVT
	f.Add(byte(modeProtected), []byte{0x0F, 0x0B})             // ud2 without an IDT
	f.Add(byte(modeProtected), []byte{0xB0, 0xFE, 0xE6, 0x64}) // reset through the i8042
	dir := f.TempDir()
	img := filepath.Join(dir, "disk.raw")
	if err := disk.CreateRaw(img, 1<<20); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, mode byte, code []byte) {
		rom := filepath.Join(t.TempDir(), "rom.bin")
		if err := os.WriteFile(rom, randomCodeROM(mode, code), 0o600); err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		p, err := New(Config{Name: "fuzz", Firmware: rom, Disks: []string{img}, Memory: 16 << 20, Processors: 1, Serial: &out})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		p.Start()
		done := make(chan StopReason, 1)
		go func() { done <- p.Wait() }()
		var r StopReason
		select {
		case r = <-done:
		case <-time.After(fuzzRunTime):
			p.Stop(StopReason{Message: "fuzz bound"})
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("mode %d: still running 5 s after Stop", mode%2)
			}
		}
		t.Logf("mode %d: %s", mode%2, r.Message)
		if r.Message == "" {
			t.Errorf("mode %d: stopped without a reason: %+v", mode%2, r)
		}
	})
}
