// Command hostileguest is a Generation 2 test guest that attacks its own
// partition's VMBus: garbage hypercalls (random codes, inputs and
// outputs, posting garbage channel messages to the root), garbage in a
// channel's ring headers, and garbage in its SynIC pages. It reports each
// step on its standard output (the debug console) and, still alive at the
// end, waits for a line on its standard input, then exits 0.
package main

import (
	"fmt"
	"math/rand/v2"
	"os"
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

func fail(err error) {
	fmt.Println("hostile:", err)
	os.Exit(1)
}
