// Command hostileguest is a Generation 2 test guest that attacks its own
// partition's VMBus: garbage hypercalls (random codes, inputs and
// outputs, posting garbage channel messages to the root), garbage in a
// channel's ring headers, every system call number from 0 to 450 with
// random arguments, and garbage in its SynIC pages. It reports each
// step on its standard output (the debug console) and, still alive at the
// end, waits for a line on its standard input, then exits 0.
package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/uart"
	"github.com/partita-hv/partita/vsc/hv"
)

const (
	synicMessagePage = 0x7FFFFE001000
	synicEventPage   = 0x7FFFFE002000
)

func main() {
	t, err := hv.Dial()
	if err != nil {
		fail(err)
	}
	pages, err := t.Pages(64)
	if err != nil {
		fail(err)
	}
	c, err := client.Connect(t, client.Config{Pages: pages, Timeout: 5 * time.Second})
	if err != nil {
		fail(err)
	}
	fmt.Println("hostile: connected")
	r := rand.New(rand.NewPCG(1, 2))

	// A channel whose ring headers it scribbles over, then rings the
	// doorbell: the root's device must fail that channel alone.
	o, err := c.Find(uart.InterfaceType)
	if err != nil {
		fail(err)
	}
	ch, err := c.Open(o, client.RingConfig{SendPages: 2, RecvPages: 2})
	if err != nil {
		fail(err)
	}
	rings, err := t.Memory().Slice(ch.RingGPA(), 4*4096)
	if err != nil {
		fail(err)
	}
	for _, hdr := range []int{0, 2 * 4096} {
		for i := 0; i < 64; i++ {
			rings[hdr+i] = byte(r.Uint32())
		}
	}
	ch.Endpoint().Notify()
	fmt.Println("hostile: ring headers scribbled")

	// Garbage hypercalls. Inputs point at random addresses or at a buffer
	// of random bytes (so HvPostMessage sends the root garbage).
	buf := make([]uint64, 64)
	for i := 0; i < 3000; i++ {
		for j := range buf {
			buf[j] = r.Uint64()
		}
		code := uintptr(r.Uint32() & 0x1FFFF)
		switch i % 4 {
		case 0:
			code = 0x5C                           // HvPostMessage of garbage
			buf[0] = uint64(1 + 3*(r.Uint32()%2)) // to the message connection ids 1 and 4
			buf[1] = uint64(1) | uint64(r.Uint32()%241)<<32
		case 1:
			code = 0x1005D // HvSignalEvent on random connections
		}
		if code&0xFFFF == 0x8002 {
			continue // the wait: harmless, only slow
		}
		addrs := []uintptr{0, uintptr(r.Uint64()), uintptr(unsafe.Pointer(&buf[0])), 0x7FFFFE000000, 0x7F0000000000 + uintptr(r.Uint32())}
		hv.Hypercall(code, addrs[r.IntN(len(addrs))], addrs[r.IntN(len(addrs))])
	}
	fmt.Println("hostile: hypercalls done")

	// Every system call number from 0 to 450, three times each, with
	// random arguments: the worker's shim serves or refuses each, and
	// none reaches the host. Calls that would end the program (exit,
	// clone, arch_prctl, which moves its thread pointer) are left out,
	// calls on memory ranges get ranges in a region of their own (not
	// the program's heap), calls on descriptors get descriptors that
	// are not the Go runtime's poller's, and waits get no time to wait.
	syscalls(r)
	fmt.Println("hostile: system calls 0-450 done")

	// Garbage in its own SynIC pages.
	for _, pg := range []uintptr{synicMessagePage, synicEventPage} {
		p := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), pg)), 4096)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
	}
	fmt.Println("hostile: synic pages scribbled")
	time.Sleep(200 * time.Millisecond)
	fmt.Println("hostile: still alive")
	// Stay until told (a line on standard input: the console sends there
	// while the synthetic console is not connected), so the test can look
	// at the root while this partition still runs.
	var b [1]byte
	os.Stdin.Read(b[:])
	os.Exit(0)
}

// syscalls throws system calls 0 to 450 with random arguments.
func syscalls(r *rand.Rand) {
	scratch := make([]byte, 4096)
	for i := range scratch {
		scratch[i] = 0xFF // a timespec here is negative: no sleep
	}
	region, err := syscall.Mmap(-1, 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		fail(err)
	}
	regionAt := uintptr(unsafe.Pointer(&region[0]))
	pick := func() uintptr {
		switch r.IntN(5) {
		case 0:
			return uintptr(r.IntN(8))
		case 1:
			return uintptr(unsafe.Pointer(&scratch[r.IntN(len(scratch))]))
		case 2:
			return ^uintptr(0)
		}
		return uintptr(r.Uint64())
	}
	for nr := uintptr(0); nr <= 450; nr++ {
		switch nr {
		case syscall.SYS_EXIT, syscall.SYS_EXIT_GROUP, syscall.SYS_CLONE, 435, syscall.SYS_ARCH_PRCTL:
			continue
		}
		for k := 0; k < 3; k++ {
			var a [6]uintptr
			for i := range a {
				a[i] = pick()
			}
			switch nr {
			case syscall.SYS_MMAP, syscall.SYS_MUNMAP, syscall.SYS_MPROTECT, syscall.SYS_MADVISE, syscall.SYS_MREMAP, syscall.SYS_MSYNC, syscall.SYS_MINCORE:
				a[0] = regionAt + uintptr(r.IntN(256))*4096
				a[1] = uintptr(r.IntN(256)) * 4096
			case syscall.SYS_READ, syscall.SYS_CLOSE, syscall.SYS_EPOLL_CTL:
				a[0] |= 64 // not standard input, not the poller's epoll or eventfd
				a[2] |= 64
			case syscall.SYS_EPOLL_WAIT, syscall.SYS_EPOLL_PWAIT:
				a[3] = 0 // no timeout
			case syscall.SYS_FUTEX:
				a[1] = 1 // FUTEX_WAKE: a wait on random words could wait forever
			}
			syscall.RawSyscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		}
	}
}

func fail(err error) {
	fmt.Println("hostile:", err)
	os.Exit(1)
}
