package gen2

import (
	"syscall"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
)

// BenchmarkSyscall: one system call of a Generation 2 program, served by
// the worker (the #GP at the syscall landing, the exit, the registers
// read and written), beside the same call made natively by this process.
//
//	go test -run '^$' -bench Syscall ./partition/gen2
func BenchmarkSyscall(b *testing.B) {
	b.Run("partita", func(b *testing.B) {
		testenv.Gen2Platform(b)
		prog := programB(b, "loop")
		for i := 0; i < b.N; i++ {
			p, err := New(Config{Name: "bench", Program: prog, Memory: 8 << 20})
			if err != nil {
				b.Fatal(err)
			}
			exit := p.Run()
			p.Close()
			if !exit.Clean || exit.Code != 0 {
				b.Fatalf("%+v", exit)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20001/1000, "µs/syscall")
	})
	b.Run("native", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			syscall.Getpid()
		}
	})
}

// BenchmarkDoorbell: a program's HvSignalEvent through the hypercall
// page's fast path, taken by a KVM ioeventfd without an exit to the
// worker (20,000 per run, program start included), beside a hypercall on
// the slow path (a #GP the worker serves).
//
//	go test -run '^$' -bench Doorbell -benchtime 5x ./partition/gen2
func BenchmarkDoorbell(b *testing.B) {
	testenv.Gen2Platform(b)
	prog := programB(b, "doorbell")
	var total time.Duration
	for i := 0; i < b.N; i++ {
		exit, rang, took, _ := runDoorbells(b, prog)
		if !exit.Clean || rang != 20000 {
			b.Fatalf("exit %+v, %d doorbells", exit, rang)
		}
		total += took
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/20000/1000, "µs/doorbell")
}

// BenchmarkPageFault: a program's first touch of a page (#PF through the
// IDT to the CPL0 stub, which exits; the worker backs the page and the
// stub returns with iretq), 1,024 per run, program start included.
//
//	go test -run '^$' -bench PageFault -benchtime 5x ./partition/gen2
func BenchmarkPageFault(b *testing.B) {
	testenv.Gen2Platform(b)
	prog := programB(b, "touch")
	var total time.Duration
	for i := 0; i < b.N; i++ {
		p, err := New(Config{Name: "touch", Program: prog, Memory: 128 << 20})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		exit := p.Run()
		total += time.Since(start)
		n := p.faults.Load()
		p.Close()
		if !exit.Clean || n < 1024 {
			b.Fatalf("exit %+v, %d faults", exit, n)
		}
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1024/1000, "µs/fault")
}
