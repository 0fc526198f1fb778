package gen2

import (
	"fmt"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/internal/testplatform"
)

// BenchmarkSyscall: one system call of a Generation 2 program, served
// by the worker's shim on this host's platform (KVM: the port write at
// the syscall landing, the exit, the registers read and written; ptrace:
// the SYSEMU stop, the registers read and written), beside the same call
// made natively by this process and, where the platform is ptrace, the
// minimal C PTRACE_SYSEMU loop (one stop, GETREGS, SETREGS, resume), as
// it comes and with its processes pinned to one CPU (as the platform
// pins a thread and its tracer). The program and the loops alternate in
// rounds of 100,000 calls (the program's start, a few milliseconds, is
// part of its round).
//
//	go test -run '^$' -bench Syscall -benchtime 5x ./partition/gen2
func BenchmarkSyscall(b *testing.B) {
	b.Run("partita", func(b *testing.B) {
		const calls = 100000
		platform := testplatform.Gen2(b)
		prog := programB(b, "loop")
		var cLoop func(int, bool) float64
		if platform == "ptrace" {
			cLoop = testguest.SysemuLoop(b)
		}
		var mine, theirs, pinned []float64
		for i := 0; i < b.N; i++ {
			p, err := New(Config{Name: "bench", Program: prog, Args: []string{strconv.Itoa(calls)}, Memory: 8 << 20})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			exit := p.Run()
			took := time.Since(start)
			p.Close()
			if !exit.Clean || exit.Code != 0 {
				b.Fatalf("%+v", exit)
			}
			mine = append(mine, float64(took.Nanoseconds())/calls)
			if cLoop != nil {
				theirs = append(theirs, cLoop(calls, false))
				pinned = append(pinned, cLoop(calls, true))
			}
		}
		b.ReportMetric(testenv.Median(mine)/1000, platform+"-µs/syscall")
		if len(theirs) > 0 {
			b.ReportMetric(testenv.Median(theirs)/1000, "c-loop-µs/syscall")
			b.ReportMetric(testenv.Median(pinned)/1000, "c-loop-pinned-µs/syscall")
			b.ReportMetric(testenv.Median(mine)/testenv.Median(theirs), platform+"/c-loop")
			b.ReportMetric(testenv.Median(mine)/testenv.Median(pinned), platform+"/c-loop-pinned")
		}
		b.ReportMetric(0, "ns/op")
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
	testplatform.Gen2(b)
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

// BenchmarkPageFault: a program's first touches of 1,024 pages, each a
// fault the shim serves by backing the page and its fault-around block
// (on KVM a #PF through the IDT to the CPL0 stub, which exits; on ptrace
// a SIGSEGV stop and an injected mmap), program start included. It
// reports the time per fault served and per page touched.
//
//	go test -run '^$' -bench PageFault -benchtime 5x ./partition/gen2
func BenchmarkPageFault(b *testing.B) {
	testplatform.Gen2(b)
	prog := programB(b, "touch")
	var total time.Duration
	var faults uint64
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
		if !exit.Clean || n == 0 {
			b.Fatalf("exit %+v, %d faults", exit, n)
		}
		faults += n
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(faults)/1000, "µs/fault")
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1024/1000, "µs/page")
}

// BenchmarkCPUBound: a CPU-bound Go program (testdata/cpuguest: SHA-256
// over 256 MiB, 8 times) in a partition on this host's platform, beside
// the same static binary run natively, alternating. It reports the
// hashing time each reports itself (its clock is the vDSO's in the
// partition) and the whole run's, from start to exit, and the ratios of
// native time to partition time (the partition's speed as a fraction of
// native).
//
//	go test -run '^$' -bench CPUBound -benchtime 5x ./partition/gen2
func BenchmarkCPUBound(b *testing.B) {
	platform := testplatform.Gen2(b)
	bin := testguest.GoProgram(b, b.TempDir(), "partition/gen2/testdata/cpuguest")
	hashTime := func(out string) float64 {
		var digest string
		var mib, rounds, us int
		if _, err := fmt.Sscanf(out, "sha256 %s over %d MiB %d times in %d us", &digest, &mib, &rounds, &us); err != nil {
			b.Fatalf("%v: %q", err, out)
		}
		return float64(us) / 1e6
	}
	var inHash, inRun, natHash, natRun []float64
	for i := 0; i < b.N; i++ {
		var out testenv.Buffer
		p, err := New(Config{Name: "cpu", Program: bin, Memory: 1 << 30, Processors: 2, Console: &out})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		exit := p.Run()
		took := time.Since(start)
		p.Close()
		if !exit.Clean || exit.Code != 0 {
			b.Fatalf("%+v: %s", exit, out.String())
		}
		inHash, inRun = append(inHash, hashTime(out.String())), append(inRun, took.Seconds())

		start = time.Now()
		nat, err := exec.Command(bin).Output()
		if err != nil {
			b.Fatal(err)
		}
		natRun, natHash = append(natRun, time.Since(start).Seconds()), append(natHash, hashTime(string(nat)))
	}
	b.ReportMetric(testenv.Median(inHash), platform+"-hash-s")
	b.ReportMetric(testenv.Median(natHash), "native-hash-s")
	b.ReportMetric(testenv.Median(natHash)/testenv.Median(inHash), "hash-speed-vs-native")
	b.ReportMetric(testenv.Median(inRun), platform+"-run-s")
	b.ReportMetric(testenv.Median(natRun), "native-run-s")
	b.ReportMetric(testenv.Median(natRun)/testenv.Median(inRun), "run-speed-vs-native")
	b.ReportMetric(0, "ns/op")
}
