package gen1

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/platform"
	"github.com/partita-hv/partita/partition/platform/kvm"
)

// BenchmarkPortIOExits runs the same ROM (an endless OUT to port 0x80)
// under the worker's run loop, which dispatches every exit through the
// port bus to the POST-code device, and under a minimal loop over the raw
// KVM ioctls that only re-enters, one after the other in the same run,
// for a fixed time each; it reports exits per second for both and their
// ratio.
func BenchmarkPortIOExits(b *testing.B) {
	requireKVM(b)
	rom := buildROM(b, "outloop")
	const window = 2 * time.Second
	b.ResetTimer()
	var workerRate, rawRate float64
	for i := 0; i < b.N; i++ {
		workerRate += workerExits(b, rom, window)
		rawRate += rawExits(b, rom, window)
	}
	b.ReportMetric(workerRate/float64(b.N), "worker-exits/s")
	b.ReportMetric(rawRate/float64(b.N), "raw-exits/s")
	b.ReportMetric(workerRate/rawRate, "worker/raw")
}

func workerExits(b *testing.B, rom string, window time.Duration) float64 {
	p, err := New(Config{Name: "bench", Firmware: rom, Memory: 16 << 20, Processors: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	p.Start()
	time.Sleep(100 * time.Millisecond) // past the reset jump
	n0, t0 := p.Exits()[platform.ExitPortIO], time.Now()
	time.Sleep(window)
	n1, t1 := p.Exits()[platform.ExitPortIO], time.Now()
	p.Stop(StopReason{Message: "benchmark done"})
	p.Wait()
	return float64(n1-n0) / t1.Sub(t0).Seconds()
}

// rawExits maps the ROM at the top of 4 GiB and 0xF0000 like the worker
// and re-enters after every exit without looking at it.
func rawExits(b *testing.B, romPath string, window time.Duration) float64 {
	img, err := os.ReadFile(romPath)
	if err != nil {
		b.Fatal(err)
	}
	sys, err := kvm.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	vm, err := sys.CreateVM()
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	if err := vm.PlatformDefaults(); err != nil {
		b.Fatal(err)
	}
	rom, err := guestmem.New("raw-rom", uint64(len(img)))
	if err != nil {
		b.Fatal(err)
	}
	defer rom.Close()
	copy(rom.Bytes(), img)
	if err := vm.SetMemory(0, fourGiB-uint64(len(img)), rom.Bytes(), kvm.MemReadOnly); err != nil {
		b.Fatal(err)
	}
	if err := vm.SetMemory(1, highRAM-uint64(len(img)), rom.Bytes(), kvm.MemReadOnly); err != nil {
		b.Fatal(err)
	}
	done := make(chan float64)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		v, err := vm.CreateVCPU(0)
		if err != nil {
			b.Error(err)
			done <- 0
			return
		}
		var n uint64
		start := time.Now()
		for time.Since(start) < window {
			for i := 0; i < 1000; i++ {
				if r, _ := v.Run(); r == kvm.ExitIO {
					n++
				}
			}
		}
		done <- float64(n) / time.Since(start).Seconds()
	}()
	return <-done
}
