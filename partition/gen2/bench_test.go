package gen2

import (
	"syscall"
	"testing"

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
