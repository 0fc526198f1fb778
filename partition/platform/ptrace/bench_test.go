package ptrace

import (
	"runtime"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/partition/platform"
)

// BenchmarkTrappedSyscall: one system call of a program, trapped by the
// platform and answered (Run returns ExitSyscall, SetReturn, Run again),
// beside the minimal C PTRACE_SYSEMU loop (testdata/sysemu.c: stop,
// GETREGS, SETREGS, resume) as it comes and with its two processes
// pinned to one CPU, as the platform pins a thread and its tracer. The
// three alternate in rounds of 20,000 calls, so that the machine's drift
// hits them alike; it reports the medians and the ratios.
//
//	go test -run '^$' -bench TrappedSyscall -benchtime 5x ./partition/platform/ptrace
func BenchmarkTrappedSyscall(b *testing.B) {
	const calls = 20000
	cLoop := testguest.SysemuLoop(b)
	m, mem := machine(b)
	// mov eax, 39; syscall; jmp back
	load(b, m, mem, []byte{0xB8, 0x27, 0x00, 0x00, 0x00, 0x0F, 0x05, 0xEB, 0xF7})
	round := make(chan chan float64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		th, err := m.NewThread(1, platform.Regs{RIP: codeVA, RSP: stackVA + 4096})
		if err != nil {
			b.Error(err)
			return
		}
		defer th.Close()
		if e := run(b, th); e.Kind != platform.ExitSyscall { // the first, with the mappings
			b.Errorf("exit %+v", e)
			return
		}
		for r := range round {
			start := time.Now()
			for j := 0; j < calls; j++ {
				th.SetReturn(1)
				if e := run(b, th); e.Kind != platform.ExitSyscall || e.Nr != 39 {
					b.Errorf("exit %+v", e)
					close(r)
					return
				}
			}
			r <- float64(time.Since(start).Nanoseconds()) / calls
		}
	}()
	var mine, theirs, pinned []float64
	for i := 0; i < b.N; i++ {
		r := make(chan float64)
		round <- r
		ns, ok := <-r
		if !ok {
			break
		}
		mine = append(mine, ns)
		// From this goroutine: the loop must not inherit the pinned
		// thread's CPU.
		theirs = append(theirs, cLoop(calls, false))
		pinned = append(pinned, cLoop(calls, true))
	}
	close(round)
	<-done
	if len(mine) == 0 {
		return
	}
	b.ReportMetric(testenv.Median(mine)/1000, "platform-µs/call")
	b.ReportMetric(testenv.Median(theirs)/1000, "c-loop-µs/call")
	b.ReportMetric(testenv.Median(pinned)/1000, "c-loop-pinned-µs/call")
	b.ReportMetric(testenv.Median(mine)/testenv.Median(theirs), "platform/c-loop")
	b.ReportMetric(testenv.Median(mine)/testenv.Median(pinned), "platform/c-loop-pinned")
	b.ReportMetric(0, "ns/op")
}
