package ptrace

import (
	"bytes"
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/partita-hv/partita/partition/platform"
)

// FuzzDecode throws arbitrary stops at the exit dispatch: a wait status,
// the tracee's registers and its siginfo, all of which a hostile program
// controls (but the status). Nothing panics, every exit is of a known
// kind, and what each kind says agrees with the registers it came from.
func FuzzDecode(f *testing.F) {
	regs := func(r unix.PtraceRegs) []byte {
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, &r)
		return b.Bytes()
	}
	sysStop := uint32(syscallStop)<<8 | 0x7f
	f.Add(sysStop, regs(unix.PtraceRegs{Orig_rax: 1, Rip: 0x401002, Rcx: 0x401002, R11: 0x246, Eflags: 0x246, Cs: userCS}), []byte{})
	f.Add(sysStop, regs(unix.PtraceRegs{Orig_rax: 0x1005D, Rdx: 0x2001, Rip: hypercallReturn, Cs: userCS}), []byte{})
	f.Add(uint32(unix.SIGSEGV)<<8|0x7f, regs(unix.PtraceRegs{Rip: 0x5000}), siginfoBytes(11, segvMapErr, 0x5000))
	f.Add(uint32(kickSignal)<<8|0x7f, regs(unix.PtraceRegs{}), []byte{})
	f.Add(uint32(unix.PTRACE_EVENT_STOP)<<16|uint32(unix.SIGTRAP)<<8|0x7f, regs(unix.PtraceRegs{}), []byte{})
	f.Add(uint32(9), regs(unix.PtraceRegs{}), []byte{})
	f.Fuzz(func(t *testing.T, status uint32, rb, sib []byte) {
		var r unix.PtraceRegs
		full := make([]byte, binary.Size(&r))
		copy(full, rb)
		binary.Read(bytes.NewReader(full), binary.LittleEndian, &r)
		in := r
		var raw [128]byte
		copy(raw[:], sib)
		s := stop{unix.WaitStatus(status)}
		si := parseSiginfo(raw[:])
		if !needsSiginfo(s) {
			si = siginfo{} // Run reads it only when needed
		}
		d := decode(s, &r, si)
		e := d.exit
		if int(e.Kind) >= platform.NumExitKinds {
			t.Fatalf("exit kind %d", e.Kind)
		}
		if d.resume && (!s.status.Stopped() || s.event() == 0) {
			t.Fatalf("resume on %s", s)
		}
		switch e.Kind {
		case platform.ExitSyscall:
			if e.Nr != in.Orig_rax || r.Rax != in.Orig_rax || d.after != afterSyscall || e.Args[0] != in.Rdi || e.Args[3] != in.R10 {
				t.Fatalf("system call %+v from %+v", e, in)
			}
		case platform.ExitHypercall:
			if in.Rip != hypercallReturn || e.Control != in.Orig_rax || e.Input != in.Rdx || e.Output != in.R8 {
				t.Fatalf("hypercall %+v from %+v", e, in)
			}
			if d.doorbell != (e.Control == 0x1005D && e.Input>>32 == 0) {
				t.Fatalf("doorbell %v for %+v", d.doorbell, e)
			}
		case platform.ExitException:
			if e.Vector >= 32 {
				t.Fatalf("vector %d", e.Vector)
			}
		}
	})
}

func siginfoBytes(signo, code int32, addr uint64) []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b, uint32(signo))
	binary.LittleEndian.PutUint32(b[8:], uint32(code))
	binary.LittleEndian.PutUint64(b[16:], addr)
	return b
}
