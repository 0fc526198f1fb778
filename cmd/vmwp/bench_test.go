package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testguest"
)

// BenchmarkSeaBIOSBoot starts a process on Debian's SeaBIOS with a raw
// disk holding the test MBR (partition/gen1/testdata/mbr.S) and times,
// from process start, the banner on COM1 and the MBR's token: our vmwp
// beside QEMU (-M pc, KVM, the disk on IDE) with the same ROM, memory,
// disk and serial console setting, in the same run. Run with
// -benchtime=5x.
func BenchmarkSeaBIOSBoot(b *testing.B) {
	const rom = "/usr/share/seabios/bios.bin"
	if _, err := os.Stat(rom); err != nil {
		b.Skip("seabios not installed")
	}
	dir := b.TempDir()
	vmwp := filepath.Join(dir, "vmwp")
	if out, err := exec.Command("go", "build", "-o", vmwp, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	sercon := filepath.Join(dir, "sercon-port")
	os.WriteFile(sercon, []byte{0xF8, 0x03, 0, 0, 0, 0, 0, 0}, 0o644)
	img := bootImage(b, dir)
	peers := map[string][]string{
		"vmwp": {vmwp, "--firmware", rom, "--disk", img, "--memory", "64M", "--serial", "stdio"},
		"qemu": {"qemu-system-x86_64", "-enable-kvm", "-M", "pc", "-m", "64", "-bios", rom,
			"-display", "none", "-vga", "none", "-nodefaults", "-monitor", "none", "-serial", "stdio",
			"-drive", "file=" + img + ",format=raw,if=ide",
			"-fw_cfg", "name=etc/sercon-port,file=" + sercon},
	}
	for _, name := range []string{"vmwp", "qemu"} {
		args := peers[name]
		b.Run(name, func(b *testing.B) {
			if _, err := exec.LookPath(args[0]); err != nil {
				b.Skipf("%s not installed", args[0])
			}
			var banner, boot time.Duration
			for i := 0; i < b.N; i++ {
				bn, bt := bootOnce(b, args)
				banner += bn
				boot += bt
			}
			b.ReportMetric(float64(banner.Milliseconds())/float64(b.N), "ms-to-banner")
			b.ReportMetric(float64(boot.Milliseconds())/float64(b.N), "ms-to-mbr")
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

func bootOnce(b *testing.B, args []string) (banner, boot time.Duration) {
	cmd := exec.Command(args[0], args[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	r := bufio.NewReader(out)
	var seen strings.Builder
	for {
		c, err := r.ReadByte()
		if err != nil {
			b.Fatalf("%s: output ended before booting: %q", args[0], seen.String())
		}
		seen.WriteByte(c)
		s := seen.String()
		if banner == 0 && strings.HasSuffix(s, "SeaBIOS (version") {
			banner = time.Since(start)
		}
		if strings.HasSuffix(s, "MBR-TOKEN") {
			return banner, time.Since(start)
		}
	}
}
