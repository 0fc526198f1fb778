package ptrace

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// The stub's seccomp filter: the second wall. A program's own system
// calls never reach it (PTRACE_SYSEMU skips them first); it matters only
// if the stub ever ran a system call the worker did not set up. It allows
// exactly what the worker injects, from the stub page's two system-call
// instructions, and kills the stub for anything else.

// Offsets in struct seccomp_data.
const (
	sdNr     = 0
	sdArch   = 4
	sdIPLow  = 8
	sdIPHigh = 12
	sdArg0   = 16
	sdArg3   = 16 + 3*8
	sdArg4   = 16 + 4*8
)

// BPF opcodes (classic BPF).
const (
	bpfLdAbsW = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfRetK   = unix.BPF_RET | unix.BPF_K
)

// cloneFlags is the thread clone the spawner injects.
const cloneFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM

// mapFlags is how the stub maps the partition's memory.
const mapFlags = unix.MAP_SHARED | unix.MAP_FIXED

// bpf is one instruction (struct sock_filter).
type bpf struct {
	code   uint16
	jt, jf uint8
	k      uint32
}

// seccompFilter returns the filter program as struct sock_filter's bytes.
func seccompFilter() []byte { return assemble(filterProgram()) }

// filterProgram is the filter, built with labels.
func filterProgram() []bpf {
	const (
		allow = unix.SECCOMP_RET_ALLOW
		kill  = unix.SECCOMP_RET_KILL_PROCESS
	)
	var a asm
	a.ld(sdArch)
	a.jne(unix.AUDIT_ARCH_X86_64, "kill")
	a.ld(sdIPHigh)
	a.jne(uint32(uint64(stubCallSite+2)>>32), "kill")
	a.ld(sdIPLow)
	a.jeq(uint32(stubCallSite+2), "call")
	a.jeq(uint32(stubClone+2), "clone")
	a.ret(kill)

	a.label("call")
	a.ld(sdNr)
	a.jeq(unix.SYS_MUNMAP, "allow")
	a.jeq(unix.SYS_MPROTECT, "allow")
	a.jeq(unix.SYS_MADVISE, "allow")
	a.jeq(unix.SYS_EXIT, "allow")
	a.jne(unix.SYS_MMAP, "kill")
	a.ld(sdArg4) // the descriptor: the partition's memory only
	a.jne(0, "kill")
	a.ld(sdArg3) // the flags
	a.jeq(mapFlags, "allow")
	a.jne(mapFlags|unix.MAP_POPULATE, "kill")
	a.ret(allow)

	a.label("clone")
	a.ld(sdNr)
	a.jne(unix.SYS_CLONE, "kill")
	a.ld(sdArg0)
	a.jne(cloneFlags, "kill")

	a.label("allow")
	a.ret(allow)
	a.label("kill")
	a.ret(kill)
	return a.resolve()
}

// asm builds a classic BPF program with forward labels.
type asm struct {
	prog   []bpf
	labels map[string]int
	fixups []fixup
}

type fixup struct {
	at    int
	label string
	onEq  bool // the label is the true branch (else the false one)
}

func (a *asm) ld(off uint32) { a.prog = append(a.prog, bpf{code: bpfLdAbsW, k: off}) }
func (a *asm) ret(v uint32)  { a.prog = append(a.prog, bpf{code: bpfRetK, k: v}) }

// jeq jumps to label if A == k, else falls through.
func (a *asm) jeq(k uint32, label string) {
	a.fixups = append(a.fixups, fixup{len(a.prog), label, true})
	a.prog = append(a.prog, bpf{code: bpfJeqK, k: k})
}

// jne jumps to label if A != k, else falls through.
func (a *asm) jne(k uint32, label string) {
	a.fixups = append(a.fixups, fixup{len(a.prog), label, false})
	a.prog = append(a.prog, bpf{code: bpfJeqK, k: k})
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.prog)
}

// resolve fills the jump offsets; every label must follow its jumps
// within 255 instructions (the filter is a few dozen).
func (a *asm) resolve() []bpf {
	for _, f := range a.fixups {
		target, ok := a.labels[f.label]
		if !ok || target <= f.at || target-f.at-1 > 255 {
			panic("ptrace: bad seccomp label " + f.label)
		}
		off := uint8(target - f.at - 1)
		if f.onEq {
			a.prog[f.at].jt = off
		} else {
			a.prog[f.at].jf = off
		}
	}
	return a.prog
}

// assemble encodes a program as an array of struct sock_filter.
func assemble(prog []bpf) []byte {
	b := make([]byte, 8*len(prog))
	for i, in := range prog {
		binary.LittleEndian.PutUint16(b[8*i:], in.code)
		b[8*i+2], b[8*i+3] = in.jt, in.jf
		binary.LittleEndian.PutUint32(b[8*i+4:], in.k)
	}
	return b
}
