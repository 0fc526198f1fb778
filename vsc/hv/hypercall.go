package hv

import (
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// The ABI (package partition/gen2).
const (
	hypercallPage    = 0x7FFFFE000000
	synicMessagePage = 0x7FFFFE001000
	synicEventPage   = 0x7FFFFE002000
	physicalWindow   = 0x7F0000000000
	windowSize       = 64 << 30 // the largest partition's memory

	callPostMessage = 0x005C
	callSignalEvent = 0x005D
	callEOM         = 0x8001
	callAllocPages  = 0x8003
	callFreePages   = 0x8004
	callFast        = 1 << 16

	sysSynicWait = 1000

	pageSize       = 4096
	maxPayload     = 240
	vmbusSINT      = 2
	slotSize       = 256
	vmbusMessage   = 1
	statusBuffers  = 0x13 // HV_STATUS_INSUFFICIENT_BUFFERS
	postRetryDelay = 200 * time.Microsecond
	postRetryLimit = 5 * time.Second
)

// hypercall calls the hypercall page (hypercall_amd64.s).
func hypercall(control, input, output uintptr) uint64

// Hypercall makes any hypercall with the raw register convention and
// returns RAX: for tools and for tests that play a hostile guest.
func Hypercall(control, input, output uintptr) uint64 { return hypercall(control, input, output) }

// Status is a Hyper-V hypercall status that is not success.
type Status uint16

func (s Status) Error() string {
	names := map[Status]string{2: "invalid hypercall code", 4: "invalid alignment", 5: "invalid parameter",
		0xB: "insufficient memory", 0x12: "invalid connection id", 0x13: "insufficient buffers"}
	if n, ok := names[s]; ok {
		return fmt.Sprintf("hypercall status %#x (%s)", uint16(s), n)
	}
	return fmt.Sprintf("hypercall status %#x", uint16(s))
}

func status(rax uint64) error {
	if s := Status(rax); s != 0 {
		return s
	}
	return nil
}

// page returns the 4 KiB at a fixed address of the ABI.
func page(addr uintptr) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), addr)), pageSize)
}

// postInput is HvPostMessage's input block: connection id, reserved,
// message type, payload size, payload. One at a time.
var (
	postMu    sync.Mutex
	postInput = new([(16 + maxPayload) / 8]uint64)
)

// PostMessage is HvPostMessage of a VMBus message to connection connID.
// While the host's queue is full it retries, for up to 5 seconds.
func PostMessage(connID uint32, payload []byte) error {
	if len(payload) > maxPayload {
		return fmt.Errorf("hv: %d-byte message exceeds %d", len(payload), maxPayload)
	}
	postMu.Lock()
	defer postMu.Unlock()
	in := unsafe.Slice((*byte)(unsafe.Pointer(postInput)), 16+maxPayload)
	clear(in)
	putUint32(in[0:], connID)
	putUint32(in[8:], vmbusMessage)
	putUint32(in[12:], uint32(len(payload)))
	copy(in[16:], payload)
	deadline := time.Now().Add(postRetryLimit)
	for {
		rax := hypercall(callPostMessage, uintptr(unsafe.Pointer(postInput)), 0)
		if Status(rax) != statusBuffers || time.Now().After(deadline) {
			return status(rax)
		}
		time.Sleep(postRetryDelay)
	}
}

// SignalEvent is HvSignalEvent, fast, on connID with flag 0: the
// channel's doorbell.
func SignalEvent(connID uint32) error {
	return status(hypercall(callSignalEvent|callFast, uintptr(connID), 0))
}

// endOfMessage asks for the next queued message of SINT 2.
func endOfMessage() { hypercall(callEOM, vmbusSINT, 0) }

// AllocPages takes pages physically contiguous zeroed pages and returns
// their guest physical address; they are mapped at Window(gpa).
func AllocPages(pages int) (uint64, error) {
	out := new(uint64)
	if err := status(hypercall(callAllocPages, uintptr(pages), uintptr(unsafe.Pointer(out)))); err != nil {
		return 0, err
	}
	return *out, nil
}

// FreePages gives back what AllocPages returned.
func FreePages(gpa uint64, pages int) error {
	return status(hypercall(callFreePages, uintptr(gpa), uintptr(pages)))
}

// wait sleeps until a SynIC message or event arrives (or one arrived
// since the last wait), at most d. It is a system call, so the Go
// runtime runs other goroutines meanwhile.
func wait(d time.Duration) {
	syscall.Syscall(sysSynicWait, uintptr(d.Microseconds()), 0, 0)
}

func putUint32(b []byte, v uint32) {
	_ = b[3]
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
