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
		testenv.RequireKVM(b)
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
	testenv.RequireKVM(b)
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
