package gen1

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/internal/testplatform"
	"github.com/partita-hv/partita/partition/accel"
	"github.com/partita-hv/partita/partition/platform"
	"github.com/partita-hv/partita/vsp/disk"
)

// buildROM assembles testdata/name.S into a flat ROM image.
func buildROM(t testing.TB, name string) string { return assemble(t, name, "0") }

// assemble builds testdata/name.S into a flat binary linked at text.
func assemble(t testing.TB, name, text string) string {
	t.Helper()
	return testguest.AssembleToFile(t, filepath.Join("testdata", name+".S"), text)
}

// requireKVM skips a test where no platform runs a Generation 1 PC (KVM,
// or tcg with Debian's libunicorn).
func requireKVM(t testing.TB) { testplatform.RequireGen1(t) }

// gen1Platform opens the platform a PC gets here, or skips.
func gen1Platform(t testing.TB) platform.Platform {
	t.Helper()
	requireKVM(t)
	pl, err := accel.Open(accel.Auto, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pl.Close() })
	return pl
}

type syncBuffer = testenv.Buffer

func runROM(t *testing.T, rom string, disks ...string) (StopReason, string, *Partition) {
	t.Helper()
	return runConfig(t, Config{Firmware: rom, Disks: disks, Memory: 16 << 20, Processors: 2})
}

// runConfig runs a partition with COM1 captured until it stops.
func runConfig(t *testing.T, cfg Config) (StopReason, string, *Partition) {
	t.Helper()
	requireKVM(t)
	var out syncBuffer
	cfg.Name, cfg.Serial = t.Name(), &out
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.Start()
	done := make(chan StopReason, 1)
	go func() { done <- p.Wait() }()
	select {
	case r := <-done:
		return r, out.String(), p
	case <-time.After(30 * time.Second):
		p.Stop(StopReason{Message: "test timeout"})
		t.Fatalf("partition did not stop within 30 s; COM1 so far %q", out.String())
	}
	return StopReason{}, "", nil
}

func TestTinyROMPrintsAndPowersOff(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := disk.CreateRaw(img, 1<<20); err != nil {
		t.Fatal(err)
	}
	r, out, p := runROM(t, buildROM(t, "hello"), img)
	if !r.PowerOff {
		t.Fatalf("stopped with %q", r)
	}
	if out != "Partita tiny ROM\r\n" {
		t.Errorf("COM1 %q", out)
	}
	if n := p.Exits()[platform.ExitPortIO]; n < 18 {
		t.Errorf("%d I/O exits for 18 bytes and a power-off", n)
	}
	if err := p.Close(); err != nil {
		t.Errorf("close (flushes the disk): %v", err)
	}
}

func TestTripleFaultStopsWithReason(t *testing.T) {
	r, _, _ := runROM(t, buildROM(t, "triple"))
	if r.PowerOff || !strings.Contains(r.Message, "triple fault") {
		t.Fatalf("stopped with %+v, want a triple fault", r)
	}
}

// TestBareMetalATAWrite runs a ROM that drives the IDE controller itself
// (no BIOS) and writes two sectors with PIO; the test reads them back from
// the image file after the guest powered off and the disk was closed.
func TestBareMetalATAWrite(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := disk.CreateRaw(img, 1<<20); err != nil {
		t.Fatal(err)
	}
	r, out, p := runROM(t, buildROM(t, "ata"), img)
	if !r.PowerOff || out != "ok" {
		t.Fatalf("stopped with %q, COM1 %q", r, out)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for sec := 0; sec < 2; sec++ {
		s := b[(5+sec)*512 : (6+sec)*512]
		for i := 0; i < 510; i += 2 {
			if s[i] != 0x41 || s[i+1] != 0x50 {
				t.Fatalf("sector %d byte %d: % x", 5+sec, i, s[i:i+2])
			}
		}
		if s[510] != byte(sec) || s[511] != 0 {
			t.Errorf("sector %d trailer % x", 5+sec, s[510:])
		}
	}
	for _, sec := range []int{4, 7} {
		if !bytes.Equal(b[sec*512:(sec+1)*512], make([]byte, 512)) {
			t.Errorf("sector %d was touched", sec)
		}
	}
}

// TestBareMetalDMARead runs a ROM that places the IDE bus-master block
// through PCI configuration, builds a PRD table and reads a sector with
// READ DMA into guest RAM, then prints what arrived.
func TestBareMetalDMARead(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := disk.CreateRaw(img, 1<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("DMA-OK-5e\x00"), 3*512)
	f.Close()
	r, out, _ := runROM(t, buildROM(t, "dma"), img)
	if !r.PowerOff || out != "DMA-OK-5e" {
		t.Fatalf("stopped with %q, COM1 %q", r, out)
	}
}

// TestAPICTimer takes the PIT's interrupts through the IOAPIC and the
// local APIC in protected mode, with the 8259As masked: routing, delivery
// through the IDT and the EOI, on whichever platform runs Generation 1.
func TestAPICTimer(t *testing.T) {
	r, out, _ := runROM(t, buildROM(t, "apic"))
	if !r.PowerOff || out != "APIC-OK" {
		t.Fatalf("stopped with %q, COM1 %q", r, out)
	}
}

// TestDMAOverCode runs code in RAM, has the IDE controller DMA other
// code over it, and runs it again: the new code must run, on a platform
// that caches translated code too.
func TestDMAOverCode(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := disk.CreateRaw(img, 1<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// mov $0x3f8, %dx; mov $'B', %al; out %al, %dx; lret
	f.WriteAt([]byte{0xBA, 0xF8, 0x03, 0xB0, 'B', 0xEE, 0xCB}, 3*512)
	f.Close()
	r, out, _ := runROM(t, buildROM(t, "dmacode"), img)
	if !r.PowerOff || out != "AB" {
		t.Fatalf("stopped with %q, COM1 %q, want \"AB\"", r, out)
	}
}

// TestPAMShadowing drives the host bridge's PAM registers from the guest:
// the option-ROM area starts on the PCI side (all ones), becomes RAM, then
// read-only RAM.
func TestPAMShadowing(t *testing.T) {
	r, out, _ := runROM(t, buildROM(t, "pam"))
	if !r.PowerOff {
		t.Fatalf("stopped with %q", r)
	}
	if out != "\xffZZ" {
		t.Errorf("COM1 %q, want \"\\xffZZ\"", out)
	}
}

// TestSeaBIOSPOST boots Debian's SeaBIOS: it must POST on our chipset,
// print its banner on COM1 (its serial console, enabled through fw_cfg)
// and reach its boot order. (Booting from the disk needs the IDE
// controller, which is not there yet.)
func TestSeaBIOSPOST(t *testing.T) {
	requireKVM(t)
	rom := testenv.RequireFile(t, "/usr/share/seabios/bios.bin", "seabios")
	var out syncBuffer
	p, err := New(Config{Name: t.Name(), Firmware: rom, Memory: 64 << 20, Processors: 1, Serial: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	p.Start()
	defer func() { p.Stop(StopReason{Message: "test done"}); p.Wait() }()
	var banner time.Duration
	for deadline := start.Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		s := out.String()
		if banner == 0 && strings.Contains(s, "SeaBIOS (version") {
			banner = time.Since(start)
		}
		if strings.Contains(s, "Booting from Hard Disk") {
			t.Logf("banner after %v, boot order after %v", banner.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			// SeaBIOS describes the ACPI hardware for an OS but does not
			// enter ACPI mode itself: nobody listens to the button.
			if err := p.PowerButton(); !errors.Is(err, ErrNoPowerButtonListener) {
				t.Errorf("PowerButton under SeaBIOS: %v", err)
			}
			return
		}
	}
	t.Fatalf("SeaBIOS did not reach its boot order in 90 s; COM1: %q; exits %v", out.String(), p.Exits())
}

// TestSeaBIOSBootsMBR boots Debian's SeaBIOS from a raw disk on the
// primary IDE channel: the MBR prints a token through INT 10h, reads LBA 2
// through INT 13h and prints what it holds, then powers off.
func TestSeaBIOSBootsMBR(t *testing.T) {
	start := time.Now()
	out, debug := bootMBR(t, "mbr", 64<<20, "16D1EF0B-91FC-4CFE-89B7-736F3D4C3661")
	// SeaBIOS prints the UUID of the SMBIOS tables the worker gave it.
	for _, want := range []string{"SeaBIOS (version", "Machine UUID 16d1ef0b-91fc-4cfe-89b7-736f3d4c3661", "MBR-TOKEN-7f3a", "SECTOR-TWO-91c4"} {
		if !strings.Contains(out, want) {
			t.Errorf("COM1 lacks %q: %q", want, out)
		}
	}
	// SeaBIOS reports the disk it found, with its exact size, on its
	// debug port.
	if want := "ata0-0: Partita Virtual Disk ATA-6 Hard-Disk (8 MiBytes)"; !strings.Contains(debug, want) {
		t.Errorf("SeaBIOS did not report %q; its log:\n%s", want, debug)
	}
	t.Logf("powered off after %v", time.Since(start).Round(time.Millisecond))
}

// bootMBR boots SeaBIOS with memory bytes of RAM and an 8 MiB disk
// holding testdata/name.S as its MBR (and a string in sector 2), until
// the guest powers off; it returns COM1's and the debug port's text.
func bootMBR(t *testing.T, name string, memory uint64, id string) (out, debug string) {
	out, debug, _ = bootMBRPartition(t, name, Config{Memory: memory, ID: id, Processors: 1})
	return out, debug
}

// bootMBRPartition is bootMBR with cfg's memory, ID and processors, and
// returns the partition too (stopped, not yet closed: the test's cleanup
// closes it).
func bootMBRPartition(t *testing.T, name string, cfg Config) (out, debug string, p *Partition) {
	t.Helper()
	requireKVM(t)
	rom := testenv.RequireFile(t, "/usr/share/seabios/bios.bin", "seabios")
	mbr, err := os.ReadFile(assemble(t, name, "0x7c00"))
	if err != nil || len(mbr) != 512 {
		t.Fatalf("%s: %d bytes, %v", name, len(mbr), err)
	}
	img := filepath.Join(t.TempDir(), "boot.raw")
	if err := disk.CreateRaw(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(mbr, 0)
	f.WriteAt([]byte("SECTOR-TWO-91c4\r\n\x00"), 2*512)
	f.Close()

	var com1, dbg syncBuffer
	cfg.Name, cfg.Firmware, cfg.Disks, cfg.Serial, cfg.DebugCon = t.Name(), rom, []string{img}, &com1, &dbg
	p, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.Start()
	done := make(chan StopReason, 1)
	go func() { done <- p.Wait() }()
	select {
	case r := <-done:
		if !r.PowerOff {
			t.Fatalf("stopped with %q; COM1 %q", r, com1.String())
		}
	case <-time.After(90 * time.Second):
		p.Stop(StopReason{Message: "test timeout"})
		<-done
		t.Fatalf("no power-off within 90 s; COM1 %q", com1.String())
	}
	return com1.String(), dbg.String(), p
}

// TestSeaBIOSCountsProcessors boots SeaBIOS with four processors: it
// wakes the others with INIT and start-up IPIs through its local APIC,
// each checks in, and it reports all four before booting the MBR.
func TestSeaBIOSCountsProcessors(t *testing.T) {
	out, debug, _ := bootMBRPartition(t, "mbr", Config{Memory: 64 << 20, Processors: 4})
	for _, want := range []string{"handle_smp: apic_id=0x1", "handle_smp: apic_id=0x2", "handle_smp: apic_id=0x3", "Found 4 cpu(s) max supported 4 cpu(s)"} {
		if !strings.Contains(debug, want) {
			t.Errorf("SeaBIOS's log lacks %q:\n%s", want, debug)
		}
	}
	if !strings.Contains(out, "MBR-TOKEN-7f3a") {
		t.Errorf("the MBR did not run: COM1 %q", out)
	}
}

// TestSeaBIOSHighMemoryMap boots a 64 GiB partition: RAM past the PCI
// hole is above 4 GiB, and the MBR sees all of it in the e820 map SeaBIOS
// builds from fw_cfg. The memory is sparse: the host gives it pages only
// as the guest touches them.
func TestSeaBIOSHighMemoryMap(t *testing.T) {
	out, _, p := bootMBRPartition(t, "e820", Config{Memory: MaxMemory, Processors: 1})
	if !strings.Contains(out, "E820-END") {
		t.Fatalf("the MBR did not finish its map: %q", out)
	}
	// Ranges as the MBR printed them: base, length, type.
	var ram [][2]uint64
	for _, line := range strings.Split(out, "\n") {
		var base, length uint64
		var typ uint32
		if n, _ := fmt.Sscanf(strings.TrimSpace(line), "%016X %016X %08X", &base, &length, &typ); n == 3 && typ == 1 {
			ram = append(ram, [2]uint64{base, length})
		}
	}
	var below, above uint64
	for _, r := range ram {
		switch {
		case r[0]+r[1] <= pciHole:
			below += r[1]
		case r[0] >= fourGiB:
			above += r[1]
		default:
			t.Errorf("RAM %#x+%#x crosses the PCI hole", r[0], r[1])
		}
	}
	if want := uint64(MaxMemory - pciHole); above != want {
		t.Errorf("RAM above 4 GiB: %#x bytes, want %#x; map %q", above, want, out)
	}
	// SeaBIOS keeps a few hundred KiB below the hole for itself (EBDA,
	// its tables): the rest is RAM.
	if below < pciHole-4<<20 {
		t.Errorf("RAM below the hole: %#x bytes, want nearly %#x; map %q", below, uint64(pciHole), out)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(p.mem.File().Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if used := uint64(st.Blocks) * 512; used > 256<<20 {
		t.Errorf("the 64 GiB memory holds %d MiB after the boot, want it sparse", used>>20)
	}
	t.Logf("e820: %#x bytes below the hole, %#x above 4 GiB; %d KiB of the memory in use", below, above, st.Blocks/2)
}

// TestGuestMemorySupplied runs the PAM ROM on memory the test made and
// shares, as the root service does with its memfd: the guest's writes to
// RAM (the shadowed 0xC0000) appear in the test's own mapping, and the
// partition closes the Memory it was handed.
func TestGuestMemorySupplied(t *testing.T) {
	const size = 16 << 20
	root, err := guestmem.New("root-view", size)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	dup, err := unix.Dup(int(root.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	mine, err := guestmem.Open(os.NewFile(uintptr(dup), "worker-view"), size)
	if err != nil {
		t.Fatal(err)
	}
	r, out, p := runConfig(t, Config{Firmware: buildROM(t, "pam"), Memory: size, GuestMemory: mine})
	if !r.PowerOff || out != "\xffZZ" {
		t.Fatalf("stopped with %q, COM1 %q", r, out)
	}
	if got := root.Bytes()[0xC0000]; got != 'Z' {
		t.Errorf("the guest's RAM write is not in the shared memfd: %#x", got)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if mine.Bytes() != nil {
		t.Error("Close left the supplied guest memory mapped")
	}
}

// TestGuestMemoryRefused: supplied memory of the wrong size, or already
// closed, is a configuration error, and New closes what it was handed.
func TestGuestMemoryRefused(t *testing.T) {
	requireKVM(t)
	rom := buildROM(t, "hello")
	wrong, err := guestmem.New("wrong", 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Firmware: rom, Memory: 16 << 20, GuestMemory: wrong}); !errors.Is(err, ErrConfig) {
		t.Errorf("8 MiB of guest memory for a 16 MiB partition: %v", err)
	}
	if wrong.Bytes() != nil {
		t.Error("New did not close the refused guest memory")
	}
	closed, err := guestmem.New("closed", 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if _, err := New(Config{Firmware: rom, Memory: 16 << 20, GuestMemory: closed}); !errors.Is(err, ErrConfig) {
		t.Errorf("closed guest memory: %v", err)
	}
	// A failure after the memory check (no firmware) closes it too.
	good, err := guestmem.New("good", 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Firmware: "/nonexistent", Memory: 16 << 20, GuestMemory: good}); !errors.Is(err, ErrConfig) {
		t.Errorf("no firmware: %v", err)
	}
	if good.Bytes() != nil {
		t.Error("New did not close the guest memory after failing")
	}
}

func TestBadConfig(t *testing.T) {
	rom := filepath.Join(t.TempDir(), "bad.rom")
	os.WriteFile(rom, make([]byte, 1000), 0o644)
	for _, c := range []Config{
		{Firmware: rom, Memory: 16 << 20},
		{Firmware: "/nonexistent", Memory: 16 << 20},
		{Firmware: rom, Memory: 100},
		{Firmware: rom, Memory: 4 << 30},
		{Firmware: rom, Memory: 16 << 20, Processors: 10000},
	} {
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// countWriter counts the bytes written to it, slowly: a vCPU thread
// spends most of its time in Write, so a Pause that returned before the
// threads parked would let the count move on.
type countWriter struct{ n atomic.Int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	time.Sleep(200 * time.Microsecond)
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// startTicker starts the ticker ROM (COM1 output for ever) on two vCPUs;
// the second waits for a start-up IPI that never comes, in KVM_RUN.
func startTicker(t *testing.T, beforeStart func(*Partition)) (*Partition, *countWriter) {
	t.Helper()
	requireKVM(t)
	out := &countWriter{}
	p, err := New(Config{Name: t.Name(), Firmware: buildROM(t, "ticker"), Memory: 16 << 20, Processors: 2, Serial: out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(StopReason{Message: "test done"})
		p.Wait()
		p.Close()
	})
	if beforeStart != nil {
		beforeStart(p)
	}
	p.Start()
	return p, out
}

// TestPauseResume: once Pause returns, COM1 output and the exit counts
// stay still; after Resume they grow again. Both are idempotent.
func TestPauseResume(t *testing.T) {
	p, out := startTicker(t, nil)
	if !waitFor(10*time.Second, func() bool { return out.n.Load() > 100 }) {
		t.Fatalf("no output from the ticker ROM: %d bytes", out.n.Load())
	}
	for round := 0; round < 3; round++ {
		if err := p.Pause(); err != nil {
			t.Fatal(err)
		}
		if err := p.Pause(); err != nil {
			t.Fatalf("second Pause: %v", err)
		}
		if !p.Paused() {
			t.Fatal("Paused() false after Pause")
		}
		n, exits := out.n.Load(), p.Exits()[platform.ExitPortIO]
		time.Sleep(200 * time.Millisecond)
		if m, e := out.n.Load(), p.Exits()[platform.ExitPortIO]; m != n || e != exits {
			t.Fatalf("round %d: while paused COM1 grew %d -> %d bytes, I/O exits %d -> %d", round, n, m, exits, e)
		}
		if err := p.Resume(); err != nil {
			t.Fatal(err)
		}
		if err := p.Resume(); err != nil {
			t.Fatalf("second Resume: %v", err)
		}
		if p.Paused() {
			t.Fatal("Paused() true after Resume")
		}
		if !waitFor(10*time.Second, func() bool { return out.n.Load() > n+100 }) {
			t.Fatalf("round %d: no output after Resume (%d bytes, %d before)", round, out.n.Load(), n)
		}
	}
}

// TestPauseBeforeStart: a partition paused before Start does not enter
// the guest until Resume.
func TestPauseBeforeStart(t *testing.T) {
	p, out := startTicker(t, func(p *Partition) {
		if err := p.Pause(); err != nil {
			t.Fatal(err)
		}
	})
	time.Sleep(200 * time.Millisecond)
	if n := out.n.Load(); n != 0 || len(p.Exits()) != 0 {
		t.Fatalf("paused before start, yet %d bytes and exits %v", n, p.Exits())
	}
	if err := p.Pause(); err != nil { // now waits for the started threads
		t.Fatal(err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return out.n.Load() > 100 }) {
		t.Fatalf("no output after Resume: %d bytes", out.n.Load())
	}
}

// TestStopWhilePaused: Stop ends a paused partition, and Pause and Resume
// after it report ErrStopped without blocking.
func TestStopWhilePaused(t *testing.T) {
	p, out := startTicker(t, nil)
	if !waitFor(10*time.Second, func() bool { return out.n.Load() > 0 }) {
		t.Fatal("no output from the ticker ROM")
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	done := make(chan StopReason, 1)
	go func() { done <- p.Wait() }()
	p.Stop(StopReason{Message: "turned off"})
	select {
	case r := <-done:
		if r.Message != "turned off" {
			t.Errorf("stopped with %q", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a paused partition did not stop")
	}
	for name, f := range map[string]func() error{"Pause": p.Pause, "Resume": p.Resume} {
		if err := f(); !errors.Is(err, ErrStopped) {
			t.Errorf("%s after Stop: %v", name, err)
		}
	}
}

// TestPauseResumeRace hammers Pause and Resume from several goroutines
// while the guest runs, then stops the partition under them: nothing
// deadlocks, and every call returns nil or ErrStopped.
func TestPauseResumeRace(t *testing.T) {
	p, out := startTicker(t, nil)
	if !waitFor(10*time.Second, func() bool { return out.n.Load() > 0 }) {
		t.Fatal("no output from the ticker ROM")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				f := p.Pause
				if (i+g)%2 == 1 {
					f = p.Resume
				}
				if err := f(); errors.Is(err, ErrStopped) {
					return
				} else if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	p.Stop(StopReason{Message: "test done"})
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("Pause/Resume callers still blocked 10 s after Stop")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p.Wait()
}

// TestPowerButton runs a ROM with no BIOS that enables the ACPI power
// button and polls for it: the press reaches it, the SCI shows in the
// slave PIC's IRR as IRQ 9 and drops when the guest clears the status,
// and the guest powers off.
func TestPowerButton(t *testing.T) {
	requireKVM(t)
	var out syncBuffer
	p, err := New(Config{Name: t.Name(), Firmware: buildROM(t, "pwrbtn"), Memory: 16 << 20, Serial: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Start()
	defer func() { p.Stop(StopReason{Message: "test done"}); p.Wait() }()
	if !waitFor(10*time.Second, func() bool { return out.String() == "R" }) {
		t.Fatalf("the ROM did not get ready: COM1 %q", out.String())
	}
	if err := p.PowerButton(); err != nil {
		t.Fatalf("PowerButton: %v", err)
	}
	done := make(chan StopReason, 1)
	go func() { done <- p.Wait() }()
	select {
	case r := <-done:
		if !r.PowerOff {
			t.Fatalf("stopped with %q", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no power-off after the button; COM1 %q", out.String())
	}
	if got := out.String(); got != "RIL" {
		t.Errorf("COM1 %q, want \"RIL\" (R ready, I the SCI in IRR, L lowered after clearing)", got)
	}
	if err := p.PowerButton(); !errors.Is(err, ErrStopped) {
		t.Errorf("PowerButton after the power-off: %v", err)
	}
}

// TestPowerButtonNotListening: a guest that never enabled the event is
// told apart from one that handles it.
func TestPowerButtonNotListening(t *testing.T) {
	p, out := startTicker(t, nil)
	if !waitFor(10*time.Second, func() bool { return out.n.Load() > 0 }) {
		t.Fatal("no output from the ticker ROM")
	}
	err := p.PowerButton()
	if !errors.Is(err, ErrNoPowerButtonListener) {
		t.Fatalf("PowerButton: %v", err)
	}
	if err.Error() != "guest does not listen for the ACPI power button" {
		t.Errorf("message %q", err)
	}
}

// TestConsoleInputEcho feeds a ROM that echoes COM1 far more than the
// receive FIFO holds, in pieces of awkward sizes: every byte comes back
// in order, and the ROM powers off on the final '.'.
func TestConsoleInputEcho(t *testing.T) {
	requireKVM(t)
	var out syncBuffer
	p, err := New(Config{Name: t.Name(), Firmware: buildROM(t, "echo"), Memory: 16 << 20, Serial: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	in := make([]byte, 3000)
	for i := range in {
		in[i] = 'A' + byte(i%26)
	}
	p.Start()
	defer func() { p.Stop(StopReason{Message: "test done"}); p.Wait() }()
	// The ROM clears the FIFO when it turns it on: input before its '>'
	// would be lost there, as on the hardware.
	if !waitFor(10*time.Second, func() bool { return out.String() == ">" }) {
		t.Fatalf("the ROM did not get ready: COM1 %q", out.String())
	}
	fed := make(chan error, 1)
	go func() { fed <- p.ConsoleInput(iotest.HalfReader(bytes.NewReader(append(in, '.')))) }()
	done := make(chan StopReason, 1)
	go func() { done <- p.Wait() }()
	select {
	case r := <-done:
		if !r.PowerOff {
			t.Fatalf("stopped with %q", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no power-off; echoed %d of %d bytes", len(out.String())-1, len(in))
	}
	if got := out.String(); got != ">"+string(in) {
		t.Errorf("echo differs: %d bytes back for %d sent; first 40 %q", len(got)-1, len(in), got[:min(len(got), 40)])
	}
	select {
	case err := <-fed:
		if err != nil {
			t.Errorf("ConsoleInput: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("ConsoleInput did not return after EOF")
	}
}

// TestConsoleInputStops: input for a guest that never reads waits on the
// full FIFO, without dropping, until the partition stops; a reader's
// error is returned.
func TestConsoleInputStops(t *testing.T) {
	p, out := startTicker(t, nil)
	if !waitFor(10*time.Second, func() bool { return out.n.Load() > 0 }) {
		t.Fatal("no output from the ticker ROM")
	}
	fed := make(chan error, 1)
	endless := &countReader{}
	go func() { fed <- p.ConsoleInput(endless) }()
	if !waitFor(10*time.Second, func() bool { return p.COM1().Stats().Received == 1 }) {
		t.Fatalf("COM1 received %d bytes", p.COM1().Stats().Received)
	}
	time.Sleep(100 * time.Millisecond)
	if got := p.COM1().Stats(); got.Received != 1 || endless.reads.Load() != 1 {
		t.Fatalf("with the guest not reading: received %d, %d reads of the input", got.Received, endless.reads.Load())
	}
	p.Stop(StopReason{Message: "test done"})
	select {
	case err := <-fed:
		if err != nil {
			t.Errorf("ConsoleInput after a stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ConsoleInput still blocked 10 s after the stop")
	}
	if err := p.ConsoleInput(iotest.ErrReader(io.ErrUnexpectedEOF)); err != nil {
		t.Errorf("ConsoleInput on a stopped partition: %v", err)
	}
}

func TestConsoleInputError(t *testing.T) {
	p, _ := startTicker(t, nil)
	want := errors.New("tty gone")
	if err := p.ConsoleInput(iotest.ErrReader(want)); !errors.Is(err, want) {
		t.Errorf("ConsoleInput: %v, want %v", err, want)
	}
}

// countReader is endless input: 'x' forever, counting its reads.
type countReader struct{ reads atomic.Int64 }

func (r *countReader) Read(b []byte) (int, error) {
	r.reads.Add(1)
	for i := range b {
		b[i] = 'x'
	}
	return len(b), nil
}
