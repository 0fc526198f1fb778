package gen2

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/partita-hv/partita/partition/platform"
)

// Linux errno values the shim returns (negated in RAX).
const (
	eBADF     = 9
	eNOMEM    = 12
	eFAULT    = 14
	eNOENT    = 2
	eEXIST    = 17
	eINTR     = 4
	eMFILE    = 24
	eAGAIN    = 11
	eTIMEDOUT = 110
	eINVAL    = 22
	eNOSYS    = 38
	maxIO     = 1 << 20 // one read, write or getrandom moves at most this
	maxWait   = 10 * time.Second
)

// Linux x86-64 system call numbers the shim serves.
const (
	sysRead          = 0
	sysWrite         = 1
	sysMmap          = 9
	sysMprotect      = 10
	sysMunmap        = 11
	sysBrk           = 12
	sysRtSigaction   = 13
	sysRtSigprocmask = 14
	sysSchedYield    = 24
	sysMadvise       = 28
	sysNanosleep     = 35
	sysGetpid        = 39
	sysExit          = 60
	sysUname         = 63
	sysGetuid        = 102
	sysGetgid        = 104
	sysGeteuid       = 107
	sysGetegid       = 108
	sysGetppid       = 110
	sysSigaltstack   = 131
	sysArchPrctl     = 158
	sysGettid        = 186
	sysSetTidAddress = 218
	sysClockGettime  = 228
	sysExitGroup     = 231
	sysGetrandom     = 318
	sysFcntl         = 72
	sysSchedGetaff   = 204
	sysOpenat        = 257
	sysClone         = 56
	sysKill          = 62
	sysTkill         = 200
	sysFutex         = 202
	sysTgkill        = 234
)

var bootTime = time.Now()

// maxCountedSyscall: unserved system calls are counted by number below
// it (Linux's table ends near 460), and together at or above it.
const maxCountedSyscall = 512

// syscall serves the system call thread t stopped on; the platform
// returns to the program with the result.
func (p *Partition) syscall(th platform.Thread, t *thread, e platform.Exit) (Exit, outcome) {
	nr, a := e.Nr, e.Args
	p.calls.Add(1)
	p.byNumber[min(nr, maxCountedSyscall)].Add(1)
	p.mu.Lock()
	p.history[p.nhist%len(p.history)] = nr
	p.nhist++
	ret, exit, out := p.serve(t, th, nr, a[0], a[1], a[2], a[3], a[4])
	p.mu.Unlock()
	if out != goOn {
		return exit, out
	}
	th.SetReturn(uint64(ret))
	return Exit{}, goOn
}

// serve carries out one system call of thread t (run by th) with the
// program's arguments, all of them untrusted; the caller holds p.mu
// (calls that block release it while they wait). It returns the result
// (a negated errno on failure), or the end of the thread or of the
// partition.
func (p *Partition) serve(t *thread, th platform.Thread, nr, a0, a1, a2, a3, a4 uint64) (int64, Exit, outcome) {
	ret := int64(0)
	switch nr {
	case sysClone:
		ret = p.clone(t, th, a0, a1, a2, a3, a4)
	case sysFutex:
		ret = p.futex(a0, a1, a2, a3)
	case sysTgkill, sysTkill, sysKill:
		// Signals are not delivered: a program's signals to itself (the
		// Go runtime's preemption requests) are dropped, and there is no
		// other process to signal.
		ret = p.signal(nr, a0, a1)
	case sysExit:
		if p.exitThread(t) {
			return 0, Exit{Clean: true, Code: int(a0 & 0xFF), Message: fmt.Sprintf("program exited with status %d", a0&0xFF)}, partitionEnds
		}
		return 0, Exit{}, threadEnds
	case sysWrite:
		if f := p.files[int64(a0)]; f != nil && f.kind == kindEventfd {
			ret = p.eventfdWrite(f, a1, a2)
			break
		}
		if a0 != 1 && a0 != 2 {
			ret = -eBADF
			break
		}
		b, ok := p.as.copyIn(a1, min(a2, maxIO))
		if !ok {
			ret = -eFAULT
			break
		}
		p.cfg.Console.Write(b)
		ret = int64(len(b))
	case sysRead:
		if f := p.files[int64(a0)]; f != nil && f.kind == kindEventfd {
			ret = p.eventfdRead(f, a1, a2)
		} else if a0 == 0 {
			ret = p.readInput(a1, a2)
		} else {
			ret = -eBADF
		}
	case sysClose:
		if p.files[int64(a0)] != nil {
			delete(p.files, int64(a0))
		} else if a0 > 2 {
			ret = -eBADF
		}
	case sysEventfd, sysEventfd2:
		ret = p.newFile(&file{kind: kindEventfd, count: uint64(uint32(a0))})
	case sysEpollCreate, sysEpollCreate1:
		ret = p.newFile(&file{kind: kindEpoll, watched: map[int64]epollWatch{}})
	case sysEpollCtl:
		ret = p.epollCtl(a0, a1, a2, a3)
	case sysEpollWait, sysEpollPwait:
		ret = p.epollWait(a0, a1, a2, int32(a3))
	case sysExitGroup:
		return 0, Exit{Clean: true, Code: int(a0 & 0xFF), Message: fmt.Sprintf("program exited with status %d", a0&0xFF)}, partitionEnds
	case sysBrk:
		// The break grows into free address space; it never shrinks
		// below where it started.
		end := (a0 + 0xFFF) &^ 0xFFF
		cur := (p.brk + 0xFFF) &^ 0xFFF
		if a0 >= p.brkStart && a0 < mmapBase && (end <= cur || p.as.free(cur, end)) {
			switch {
			case end > cur:
				if p.as.add(cur, end, protRead|protWrite) {
					p.brk = a0
				}
			case end < cur:
				p.as.remove(end, cur)
				p.brk = a0
			default:
				p.brk = a0
			}
		}
		ret = int64(p.brk)
	case sysMmap:
		ret = p.mmap(a0, a1, a2, a3, a4)
	case sysMunmap:
		if a0%4096 != 0 || a0 < userFloor || a0 >= userTop || a1 == 0 || a1 > userTop-a0 {
			ret = -eINVAL
			break
		}
		p.as.remove(a0, a0+(a1+0xFFF)&^0xFFF)
	case sysMprotect:
		if a0%4096 != 0 || a0 < userFloor || a0 >= userTop || a1 > userTop-a0 {
			ret = -eINVAL
			break
		}
		p.mprotect(a0, (a1+0xFFF)&^0xFFF, uint32(a2))
	case sysMadvise:
		// Advice only: nothing is given back in this version.
	case sysArchPrctl:
		ret = p.archPrctl(th, a0, a1)
	case sysFcntl:
		// The standard descriptors (the console) and the program's own
		// eventfds and epolls exist; flags read as none set.
		if a0 > 2 && p.files[int64(a0)] == nil {
			ret = -eBADF
		}
	case sysOpenat:
		ret = -eNOENT // there is no file system
	case sysSchedGetaff:
		// The configured processors: the mask's low bits.
		if a1 < 8 {
			ret = -eINVAL
			break
		}
		mask := uint64(1)<<p.cfg.Processors - 1 // 64: the shift gives 0, the mask all ones
		if !p.as.copyOut(a2, binary.LittleEndian.AppendUint64(nil, mask)) {
			ret = -eFAULT
			break
		}
		ret = 8
	case sysSetTidAddress, sysGettid:
		ret = int64(t.tid)
	case sysGetpid:
		ret = 1
	case sysGetppid, sysGetuid, sysGetgid, sysGeteuid, sysGetegid:
		ret = 0
	case sysSchedYield:
	case sysRtSigaction, sysRtSigprocmask, sysSigaltstack:
		ret = p.signals(nr, a1, a2, a3)
	case sysClockGettime:
		ret = p.clockGettime(a0, a1)
	case sysNanosleep:
		ret = p.nanosleep(a0)
	case SysSynicWait:
		p.waitSynic(min(a0, maxWaitMicroseconds))
	case sysGetrandom:
		b := randomBytes(int(min(a1, maxIO)))
		if !p.as.copyOut(a0, b) {
			ret = -eFAULT
			break
		}
		ret = int64(len(b))
	case sysUname:
		b := make([]byte, 6*65)
		for i, f := range []string{"Partita", p.cfg.Name, "6.1.0-partita", "#1", "x86_64", "(none)"} {
			copy(b[65*i:65*i+64], f)
		}
		if !p.as.copyOut(a0, b) {
			ret = -eFAULT
		}
	default:
		key := nr
		if key >= maxCountedSyscall {
			key = maxCountedSyscall // one counter for all numbers above the table
		}
		c, _ := p.enosys.LoadOrStore(key, new(atomic.Uint64))
		c.(*atomic.Uint64).Add(1)
		ret = -eNOSYS
	}
	return ret, Exit{}, goOn
}

// mmap serves anonymous private mappings: address space now, frames on
// first touch.
func (p *Partition) mmap(addr, length, prot, flags, fd uint64) int64 {
	const (
		mapFixed          = 0x10
		mapAnonymous      = 0x20
		mapFixedNoReplace = 0x100000
	)
	if flags&mapAnonymous == 0 || int64(fd) != -1 && fd != 0xFFFFFFFF {
		return -eNOSYS // no files in a partition
	}
	if length == 0 || length > userTop || prot&^7 != 0 {
		return -eINVAL
	}
	length = (length + 0xFFF) &^ 0xFFF
	if flags&(mapFixed|mapFixedNoReplace) != 0 {
		if addr%4096 != 0 || addr < userFloor || addr >= userTop || length > userTop-addr {
			return -eINVAL
		}
		if flags&mapFixedNoReplace != 0 && !p.as.free(addr, addr+length) {
			return -eEXIST
		}
		if !p.as.add(addr, addr+length, uint32(prot)) {
			return -eNOMEM
		}
		return int64(addr)
	}
	at, ok := p.as.place(addr&^0xFFF, length)
	if !ok || !p.as.add(at, at+length, uint32(prot)) {
		return -eNOMEM
	}
	return int64(at)
}

// mprotect changes the protection of the ranges in [addr, addr+length);
// pages already backed keep what they had (see vm.go).
func (p *Partition) mprotect(addr, length uint64, prot uint32) {
	var parts []vma
	for _, v := range p.as.vmas {
		if v.end > addr && v.start < addr+length {
			part := v.part(max(v.start, addr), min(v.end, addr+length))
			part.prot = prot
			parts = append(parts, part)
		}
	}
	for _, v := range parts {
		p.as.addRange(v)
	}
}

// archPrctl sets and reads the FS base (thread-local storage), which
// the platform keeps with the thread's registers.
func (p *Partition) archPrctl(th platform.Thread, code, addr uint64) int64 {
	const (
		archSetFS = 0x1002
		archGetFS = 0x1003
	)
	if th == nil {
		return -eINVAL
	}
	r, err := th.Regs()
	if err != nil {
		return -eINVAL
	}
	switch code {
	case archSetFS:
		if addr >= 1<<47 {
			return -eFAULT // not canonical
		}
		r.FSBase = addr
		if th.SetRegs(r) != nil {
			return -eINVAL
		}
		return 0
	case archGetFS:
		if !p.as.copyOut(addr, binary.LittleEndian.AppendUint64(nil, r.FSBase)) {
			return -eFAULT
		}
		return 0
	}
	return -eINVAL
}

// signal answers kill, tkill and tgkill: 0 for the program itself (the
// partition's only process, pid 1) or one of its threads, ESRCH for
// anything else; nothing is delivered. The caller holds p.mu.
func (p *Partition) signal(nr, a0, a1 uint64) int64 {
	const eSRCH = 3
	self := func(pid uint64) bool { return int32(pid) == 1 }
	thread := func(tid uint64) bool { return int32(tid) > 0 && p.threads[int(int32(tid))] != nil }
	switch nr {
	case sysKill:
		if self(a0) {
			return 0
		}
	case sysTkill:
		if thread(a0) {
			return 0
		}
	case sysTgkill:
		if self(a0) && thread(a1) {
			return 0
		}
	}
	return -eSRCH
}

// signals records signal dispositions and masks without delivering
// signals: the old values read back as none set.
func (p *Partition) signals(nr, a1, a2, a3 uint64) int64 {
	var old uint64
	var size uint64
	switch nr {
	case sysRtSigaction:
		old, size = a2, 32
	case sysRtSigprocmask:
		old, size = a2, 8
	case sysSigaltstack:
		old, size = a1, 24
	}
	if old != 0 {
		b := make([]byte, size)
		if nr == sysSigaltstack {
			binary.LittleEndian.PutUint32(b[8:], 2) // SS_DISABLE
		}
		if !p.as.copyOut(old, b) {
			return -eFAULT
		}
	}
	_ = a3
	return 0
}

// clockGettime serves the realtime and monotonic clocks.
func (p *Partition) clockGettime(clock, addr uint64) int64 {
	var ns int64
	switch clock {
	case 0: // CLOCK_REALTIME
		ns = time.Now().UnixNano()
	case 1, 4, 7: // CLOCK_MONOTONIC, _RAW, _BOOTTIME
		ns = int64(time.Since(bootTime))
	default:
		return -eINVAL
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(ns/1e9))
	b = binary.LittleEndian.AppendUint64(b, uint64(ns%1e9))
	if !p.as.copyOut(addr, b) {
		return -eFAULT
	}
	return 0
}

// nanosleep sleeps for at most maxWait at a time.
func (p *Partition) nanosleep(req uint64) int64 {
	b, ok := p.as.copyIn(req, 16)
	if !ok {
		return -eFAULT
	}
	sec, nsec := int64(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:]))
	if sec < 0 || nsec < 0 || nsec >= 1e9 {
		return -eINVAL
	}
	d := time.Duration(sec)*time.Second + time.Duration(nsec)
	if sec > int64(maxWait/time.Second) {
		d = maxWait
	}
	p.mu.Unlock()
	defer p.mu.Lock()
	if waitFor(max(d, minSleep), p.end, nil) == 0 {
		return -eINTR
	}
	return 0
}

// minSleep is the shortest nanosleep the shim gives. The Go runtime's
// sysmon thread sleeps 20 µs at a time whenever the program is busy; at
// ~30 µs an exit, honouring that exactly makes it the program's busiest
// thread. A quarter of a millisecond keeps it quiet without the 1 ms
// floor of Go's own timers, which stalled the runtime's short waits.
const minSleep = 250 * time.Microsecond

// randomBytes returns n random bytes (AT_RANDOM).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// Clone flags.
const (
	cloneVM            = 0x100
	cloneSighand       = 0x800
	cloneThread        = 0x10000
	cloneSettls        = 0x80000
	cloneParentSettid  = 0x100000
	cloneChildCleartid = 0x200000
	cloneChildSettid   = 0x1000000
)

// clone starts a thread of the program on a new processor: the parent's
// registers, at the instruction after the syscall, with RAX 0 and the
// new stack. Processes (clone without CLONE_VM and CLONE_THREAD) do not
// exist in a partition.
func (p *Partition) clone(t *thread, th platform.Thread, flags, stack, ptid, ctid, tls uint64) int64 {
	if flags&(cloneVM|cloneThread|cloneSighand) != cloneVM|cloneThread|cloneSighand {
		return -eNOSYS
	}
	if th == nil {
		return -eAGAIN
	}
	r, err := th.Regs()
	if err != nil {
		return -eAGAIN
	}
	start := r
	start.RAX = 0
	start.RIP = r.RCX
	start.RFLAGS = r.R11&^0x47700 | 0x2
	if stack != 0 {
		start.RSP = stack
	}
	if flags&cloneSettls != 0 {
		if tls >= 1<<47 {
			return -eINVAL
		}
		start.FSBase = tls
	}
	child, err := p.newThread(start)
	if err != nil {
		return -eAGAIN
	}
	tid := binary.LittleEndian.AppendUint32(nil, uint32(child.tid))
	if flags&cloneParentSettid != 0 && !p.as.copyOut(ptid, tid) {
		delete(p.threads, child.tid)
		return -eFAULT
	}
	if flags&cloneChildSettid != 0 && !p.as.copyOut(ctid, tid) {
		delete(p.threads, child.tid)
		return -eFAULT
	}
	if flags&cloneChildCleartid != 0 {
		child.ctid = ctid
	}
	p.startThread(child)
	return int64(child.tid)
}

// exitThread ends thread t (clearing and waking its CLONE_CHILD_CLEARTID
// word) and reports whether it was the last; the caller holds p.mu.
func (p *Partition) exitThread(t *thread) (last bool) {
	if t.ctid != 0 && p.as.copyOut(t.ctid, make([]byte, 4)) {
		p.futex(t.ctid, futexWake, 1<<31-1, 0)
	}
	delete(p.threads, t.tid)
	return len(p.threads) == 0
}

// Futex operations.
const (
	futexWait       = 0
	futexWake       = 1
	futexWaitBitset = 9
	futexWakeBitset = 10
	futexPrivate    = 128
	futexRealtime   = 256
)

// maxWaiters bounds the waiters on one futex word.
const maxWaiters = 1024

// futex serves FUTEX_WAIT and FUTEX_WAKE (and their bitset forms, with the
// bitset taken as all ones), keyed by the word's physical address; the
// caller holds p.mu, which a wait releases while it waits.
func (p *Partition) futex(uaddr, op, val, timeout uint64) int64 {
	if uaddr%4 != 0 {
		return -eINVAL
	}
	pa, ok := p.as.translate(uaddr, false)
	if !ok {
		return -eFAULT
	}
	switch op &^ (futexPrivate | futexRealtime) {
	case futexWait, futexWaitBitset:
		if binary.LittleEndian.Uint32(p.mem.Bytes()[pa:]) != uint32(val) {
			return -eAGAIN
		}
		limit := forever
		if timeout != 0 {
			b, ok := p.as.copyIn(timeout, 16)
			if !ok {
				return -eFAULT
			}
			sec, nsec := int64(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:]))
			if sec < 0 || nsec < 0 || nsec >= 1e9 {
				return -eINVAL
			}
			d := time.Duration(min(sec, int64(maxWait/time.Second)))*time.Second + time.Duration(nsec)
			if op&^(futexPrivate|futexRealtime) == futexWaitBitset {
				// An absolute time on CLOCK_MONOTONIC (or REALTIME).
				now := time.Since(bootTime)
				if op&futexRealtime != 0 {
					now = time.Duration(time.Now().UnixNano())
				}
				d = max(0, time.Duration(sec)*time.Second+time.Duration(nsec)-now)
			}
			limit = min(d, maxWait)
		}
		if len(p.futexes[pa]) >= maxWaiters {
			return -eAGAIN
		}
		ch := make(chan struct{})
		p.futexes[pa] = append(p.futexes[pa], ch)
		p.mu.Unlock()
		var ret int64
		switch waitFor(limit, ch, p.end) {
		case -1:
			ret = -eTIMEDOUT
		case 1:
			ret = -eINTR
		}
		p.mu.Lock()
		if ret != 0 {
			select {
			case <-ch:
				ret = 0 // a wake raced the timeout: it counted this waiter
			default:
				p.dropWaiter(pa, ch)
			}
		}
		return ret
	case futexWake, futexWakeBitset:
		n := int64(0)
		for n < int64(min(val, 1<<31-1)) && len(p.futexes[pa]) > 0 {
			close(p.futexes[pa][0])
			p.futexes[pa] = p.futexes[pa][1:]
			n++
		}
		if len(p.futexes[pa]) == 0 {
			delete(p.futexes, pa)
		}
		return n
	}
	return -eNOSYS
}

// dropWaiter removes a waiter that gave up (unless a wake took it).
func (p *Partition) dropWaiter(pa uint64, ch chan struct{}) {
	ws := p.futexes[pa]
	for i, w := range ws {
		if w == ch {
			p.futexes[pa] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(p.futexes[pa]) == 0 {
		delete(p.futexes, pa)
	}
}
