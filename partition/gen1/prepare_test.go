package gen1

import (
	"errors"
	"strings"
	"testing"
)

// TestPreparedVM runs the tiny ROM on a VM made ahead.
func TestPreparedVM(t *testing.T) {
	pr, err := Prepare(gen1Platform(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	r, out, _ := runConfig(t, Config{Firmware: buildROM(t, "hello"), Memory: 16 << 20, Prepared: pr})
	if !r.PowerOff || !strings.Contains(out, "Partita tiny ROM") {
		t.Fatalf("stopped with %q, COM1 %q", r, out)
	}
	if err := pr.Close(); err != nil { // the partition closed it; closing again is harmless
		t.Fatal(err)
	}
}

// TestPreparedVMClosedOnBadConfig: New owns the prepared VM even when it
// refuses the configuration.
func TestPreparedVMClosedOnBadConfig(t *testing.T) {
	pr, err := Prepare(gen1Platform(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Name: "bad", Firmware: "/nonexistent", Memory: 16 << 20, Prepared: pr})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("New: %v, want ErrConfig", err)
	}
	if err := pr.pc.MapRegion(0, make([]byte, 4096), false); err == nil {
		t.Fatal("the prepared VM still works after New refused it")
	}
}

// BenchmarkPrepare measures what a spare worker does ahead of a start.
func BenchmarkPrepare(b *testing.B) {
	pl := gen1Platform(b)
	for i := 0; i < b.N; i++ {
		pr, err := Prepare(pl, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		pr.Close()
		b.StartTimer()
	}
}
