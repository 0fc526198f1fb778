package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/partition/accel"
)

// Each benchmark here runs our vmwp and QEMU side by side on the same
// guest, once per platform this machine has for Generation 1: vmwp
// --accel kvm beside qemu -accel kvm where /dev/kvm opens, vmwp --accel
// tcg beside qemu -accel tcg where libunicorn links.

// gen1Platforms lists the Generation 1 platforms that open here.
func gen1Platforms(b *testing.B) []string {
	var out []string
	for _, name := range []string{accel.KVM, accel.TCG} {
		if _, err := accel.Resolve(name, 1); err == nil {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		b.Skip("no platform runs Generation 1 here")
	}
	return out
}

// buildVMWP builds this command into dir.
func buildVMWP(b *testing.B, dir string) string {
	vmwp := filepath.Join(dir, "vmwp")
	if out, err := exec.Command("go", "build", "-o", vmwp, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	return vmwp
}

// qemuArgs is QEMU's command line for a ROM, memory and accelerator,
// COM1 on standard output.
func qemuArgs(b *testing.B, platform, rom, memMB string, more ...string) []string {
	qemu := testenv.RequireTool(b, "qemu-system-x86_64")
	return append([]string{qemu, "-accel", platform, "-M", "pc", "-m", memMB, "-bios", rom,
		"-display", "none", "-vga", "none", "-nodefaults", "-monitor", "none", "-serial", "stdio"}, more...)
}

func medianOf(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkSeaBIOSBoot starts a process on Debian's SeaBIOS with a raw
// disk holding the test MBR (partition/gen1/testdata/mbr.S) and times,
// from process start, the banner on COM1 and the MBR's token: vmwp beside
// QEMU (-M pc, the disk on IDE) with the same ROM, memory, disk and
// serial console setting, in the same run, boots alternating. It reports
// medians.
//
//	go test -run '^$' -bench SeaBIOSBoot -benchtime 5x ./cmd/vmwp
func BenchmarkSeaBIOSBoot(b *testing.B) {
	rom := testenv.RequireFile(b, "/usr/share/seabios/bios.bin", "seabios")
	dir := b.TempDir()
	vmwp := buildVMWP(b, dir)
	sercon := filepath.Join(dir, "sercon-port")
	os.WriteFile(sercon, []byte{0xF8, 0x03, 0, 0, 0, 0, 0, 0}, 0o644)
	img := bootImage(b, dir)
	for _, pl := range gen1Platforms(b) {
		b.Run(pl, func(b *testing.B) {
			peers := [][]string{
				{vmwp, "--accel", pl, "--firmware", rom, "--disk", img, "--memory", "64M", "--serial", "stdio"},
				qemuArgs(b, pl, rom, "64", "-drive", "file="+img+",format=raw,if=ide",
					"-fw_cfg", "name=etc/sercon-port,file="+sercon),
			}
			var banner, boot [2][]time.Duration
			for i := 0; i < b.N; i++ {
				for j, args := range peers {
					bn, bt := bootOnce(b, args)
					banner[j] = append(banner[j], bn)
					boot[j] = append(boot[j], bt)
				}
			}
			for j, who := range []string{"vmwp", "qemu"} {
				b.ReportMetric(float64(medianOf(banner[j]).Microseconds())/1000, who+"-ms-to-banner")
				b.ReportMetric(float64(medianOf(boot[j]).Microseconds())/1000, who+"-ms-to-mbr")
			}
			b.ReportMetric(float64(medianOf(boot[0]))/float64(medianOf(boot[1])), "vmwp/qemu-mbr")
		})
	}
}

// bootImage assembles the test MBR and writes it to an 8 MiB raw image.
func bootImage(b *testing.B, dir string) string {
	img := filepath.Join(dir, "boot.raw")
	mbr := testguest.AssembleFile(b, testguest.WorkerROM("mbr"), "0x7c00")
	disk := make([]byte, 8<<20)
	copy(disk, mbr)
	copy(disk[2*512:], "SECTOR-TWO-91c4\r\n\x00")
	if err := os.WriteFile(img, disk, 0o644); err != nil {
		b.Fatal(err)
	}
	return img
}

// start starts a process with its standard output readable; the caller
// calls the returned stop.
func start(b *testing.B, args []string) (*bufio.Reader, time.Time, func()) {
	cmd := exec.Command(args[0], args[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	return bufio.NewReader(out), t0, func() {
		timer.Stop()
		cmd.Process.Kill()
		cmd.Wait()
	}
}

func bootOnce(b *testing.B, args []string) (banner, boot time.Duration) {
	r, t0, stop := start(b, args)
	defer stop()
	var seen strings.Builder
	for {
		c, err := r.ReadByte()
		if err != nil {
			b.Fatalf("%s: output ended before booting: %q", args[0], seen.String())
		}
		seen.WriteByte(c)
		s := seen.String()
		if banner == 0 && strings.HasSuffix(s, "SeaBIOS (version") {
			banner = time.Since(t0)
		}
		if strings.HasSuffix(s, "MBR-TOKEN") {
			return banner, time.Since(t0)
		}
	}
}

// BenchmarkGuestLoops runs guest loops under vmwp and under QEMU and
// reports iterations per second of each, from the time between the 2nd
// and the 7th dot on COM1 (5 million iterations): "port-io" is a loop of
// OUTs to the POST port 0x80 (outrate.S), "store" a loop of byte stores
// to RAM (storerate.S).
//
//	go test -run '^$' -bench GuestLoops -benchtime 3x ./cmd/vmwp
func BenchmarkGuestLoops(b *testing.B) {
	dir := b.TempDir()
	vmwp := buildVMWP(b, dir)
	for _, loop := range []struct{ name, rom string }{{"port-io", "outrate"}, {"store", "storerate"}} {
		rom := testguest.AssembleToFile(b, testguest.WorkerROM(loop.rom), "0")
		for _, pl := range gen1Platforms(b) {
			b.Run(loop.name+"/"+pl, func(b *testing.B) {
				peers := [][]string{
					{vmwp, "--accel", pl, "--firmware", rom, "--memory", "16M", "--serial", "stdio"},
					qemuArgs(b, pl, rom, "16"),
				}
				var per [2][]time.Duration
				for i := 0; i < b.N; i++ {
					for j, args := range peers {
						per[j] = append(per[j], millionIterations(b, args))
					}
				}
				rates := [2]float64{}
				for j, who := range []string{"vmwp", "qemu"} {
					rates[j] = 1e6 / medianOf(per[j]).Seconds()
					b.ReportMetric(rates[j], who+"-iterations/s")
				}
				b.ReportMetric(rates[0]/rates[1], "vmwp/qemu")
			})
		}
	}
}

// millionIterations returns the time of a million iterations of a dot
// ROM's loop: the time from the 2nd dot to the 7th over 5.
func millionIterations(b *testing.B, args []string) time.Duration {
	r, _, stop := start(b, args)
	defer stop()
	var t2 time.Time
	for dots := 0; dots < 7; {
		c, err := r.ReadByte()
		if err != nil {
			b.Fatalf("%s: output ended after %d dots", args[0], dots)
		}
		if c != '.' {
			continue
		}
		dots++
		if dots == 2 {
			t2 = time.Now()
		}
	}
	return time.Since(t2) / 5
}
