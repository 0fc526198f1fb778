package ptrace

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The stub executable: one page, loaded at stubBase, read and execute.
// It holds its own ELF headers and three pieces of code:
//
//	spin   (entry):  pause; jmp spin            ; wait to be seized
//	callSite:        syscall; int3             ; an injected call, then a stop
//	cloneSite:       syscall; test rax, rax; jz child; int3
//	child:           pause; jmp child          ; a new thread waits to be seized
//
// The stub never makes a system call of its own: the worker seizes it
// while it spins and from then on sets its registers before every call
// it injects. Program addresses start at 2 MiB, so the page is out of the
// program's reach but for a jump, which gains it nothing: a system call
// there is still stopped by PTRACE_SYSEMU.
const (
	stubBase     = 0x10000 // the lowest address mmap_min_addr allows
	stubSpin     = stubBase + 0x100
	stubCallSite = stubBase + 0x110
	stubClone    = stubBase + 0x120
	stubSize     = 0x1000
)

// stubImage builds the stub executable.
func stubImage() []byte {
	b := make([]byte, stubSize)
	le := binary.LittleEndian
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(b[16:], 2)  // ET_EXEC
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], stubSpin) // e_entry
	le.PutUint64(b[32:], 64)       // e_phoff
	le.PutUint16(b[52:], 64)       // e_ehsize
	le.PutUint16(b[54:], 56)       // e_phentsize
	le.PutUint16(b[56:], 1)        // e_phnum
	ph := b[64:]
	le.PutUint32(ph, 1)     // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[8:], 0) // p_offset
	le.PutUint64(ph[16:], stubBase)
	le.PutUint64(ph[24:], stubBase)
	le.PutUint64(ph[32:], stubSize) // p_filesz
	le.PutUint64(ph[40:], stubSize) // p_memsz
	le.PutUint64(ph[48:], 0x1000)
	copy(b[stubSpin-stubBase:], []byte{0xF3, 0x90, 0xEB, 0xFC})
	copy(b[stubCallSite-stubBase:], []byte{0x0F, 0x05, 0xCC})
	copy(b[stubClone-stubBase:], []byte{
		0x0F, 0x05, // syscall
		0x48, 0x85, 0xC0, // test rax, rax
		0x74, 0x01, // jz child
		0xCC,       // int3
		0xF3, 0x90, // child: pause
		0xEB, 0xFC, // jmp child
	})
	return b
}

// stubName is what ps shows for a stub process.
const stubName = "partita-stub"

// startStub starts the stub executable with memfd as its descriptor 0,
// in fresh namespaces, and returns its pid. The calling goroutine's OS
// thread must be locked and stay alive as long as the stub: the stub
// gets SIGKILL when that thread exits.
func startStub(memfd int) (int, error) {
	img, err := unix.MemfdCreate(stubName, unix.MFD_CLOEXEC)
	if err != nil {
		return 0, fmt.Errorf("ptrace: stub image: %w", err)
	}
	defer unix.Close(img)
	if _, err := unix.Write(img, stubImage()); err != nil {
		return 0, fmt.Errorf("ptrace: stub image: %w", err)
	}
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
		Setsid:     true,
	}
	if os.Geteuid() != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	// The image's descriptor is close-on-exec: the kernel opens the path
	// before it closes such descriptors, so the stub keeps none of it.
	pid, err := syscall.ForkExec(fmt.Sprintf("/proc/self/fd/%d", img), []string{stubName}, &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{},
		Files: []uintptr{uintptr(memfd)},
		Sys:   attr,
	})
	if err != nil {
		return 0, fmt.Errorf("ptrace: start the stub: %w", err)
	}
	return pid, nil
}

// mappings lists the start and end of every mapping of process pid.
func mappings(pid int) ([][2]uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rng, _, _ := strings.Cut(sc.Text(), " ")
		lo, hi, ok := strings.Cut(rng, "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("ptrace: /proc/%d/maps: %q", pid, sc.Text())
		}
		out = append(out, [2]uint64{a, b})
	}
	return out, sc.Err()
}

// probe starts a stub, seizes it and kills it: whether this host lets
// the worker use the platform at all.
func probe() error {
	fd, err := unix.MemfdCreate("partita-probe", unix.MFD_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	errc := make(chan error, 1)
	go func() {
		// Locked and never unlocked: the thread, the stub's tracer and
		// parent-death signal, ends with the goroutine.
		runtime.LockOSThread()
		pid, err := startStub(fd)
		if err != nil {
			errc <- err
			return
		}
		_, err = seize(pid, seizeOptions)
		unix.Kill(pid, unix.SIGKILL)
		reap(pid)
		errc <- err
	}()
	return <-errc
}
