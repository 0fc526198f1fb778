package hv

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/vmbus"
	"github.com/partita-hv/partita/vmbus/synic"
)

var _ vmbus.GuestTransport = (*Transport)(nil)

// messageQueue is how many SINT 2 messages wait for RecvMessage before
// the handler stops taking them out of the slot (and the host's queue,
// then the root, wait).
const messageQueue = 64

// waitSlice bounds one sleep of the SINT 2 handler, so that Close is
// noticed.
const waitSlice = 100 * time.Millisecond

// Transport is the VMBus guest transport inside a Generation 2 partition.
// One goroutine is its SINT 2 handler: it takes messages out of the
// message slot, drains the event flags into channel waiters, and sleeps
// in the SynIC wait.
type Transport struct {
	mem     *Memory
	flags   *synic.EventFlags
	waiters *synic.Waiters
	msgs    chan []byte
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once

	Messages atomic.Uint64 // messages received
	Wakeups  atomic.Uint64 // returns from the SynIC wait
}

// Dial starts the transport's SINT 2 handler. There is one per program:
// the SynIC pages are the program's.
//
// Dial makes sure the program runs with at least two Ps (GOMAXPROCS). The
// handler spends most of its life in the SynIC wait, a system call, and Go's
// runtime counts its P as busy until sysmon takes it back. A partition
// defined with one processor (the default) reports one, so the runtime
// starts with one P, and in a partition sysmon's sleeps last at least 250 µs: every wait of the handler
// then stalled the program's goroutines for up to that long. A second P lets
// them run while the handler waits. Each thread of a Generation 2 program is
// its own vCPU, so the two Ps also run in parallel when both have work.
func Dial() (*Transport, error) {
	if runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
	flags, err := synic.NewEventFlags(page(synicEventPage))
	if err != nil {
		return nil, err
	}
	t := &Transport{
		mem:     &Memory{},
		flags:   flags,
		waiters: synic.NewWaiters(),
		msgs:    make(chan []byte, messageQueue),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go t.sint()
	return t, nil
}

// sint is the SINT 2 handler.
func (t *Transport) sint() {
	defer close(t.done)
	slot := page(synicMessagePage)[vmbusSINT*slotSize : (vmbusSINT+1)*slotSize]
	typ := (*uint32)(unsafe.Pointer(&slot[0]))
	for {
		for atomic.LoadUint32(typ) != 0 {
			n := min(int(slot[4]), maxPayload)
			m := append([]byte(nil), slot[16:16+n]...)
			// Free the slot, then look for msg_pending: the worker sets
			// it only while the slot is taken, so in this order no
			// queued message is left without an EOM.
			atomic.StoreUint32(typ, 0)
			if atomic.LoadUint32((*uint32)(unsafe.Pointer(&slot[4])))>>8&1 != 0 {
				endOfMessage()
			}
			t.Messages.Add(1)
			select {
			case t.msgs <- m:
			case <-t.quit:
				return
			}
		}
		t.waiters.Drain(t.flags)
		select {
		case <-t.quit:
			return
		default:
		}
		wait(waitSlice)
		t.Wakeups.Add(1)
	}
}

// Memory is the guest memory the transport can reach: the pages its Pages
// allocator handed out.
func (t *Transport) Memory() vmbus.GuestMemory { return t.mem }

// PostMessage is HvPostMessage with message type 1 (VMBus).
func (t *Transport) PostMessage(connID uint32, payload []byte) error {
	return PostMessage(connID, payload)
}

// RecvMessage returns the next SINT 2 message.
func (t *Transport) RecvMessage() ([]byte, error) {
	select {
	case m := <-t.msgs:
		return m, nil
	case <-t.quit:
		return nil, vmbus.ErrTransportClosed
	}
}

// SignalEvent is HvSignalEvent on connID.
func (t *Transport) SignalEvent(connID uint32) error {
	if err := SignalEvent(connID); err != nil {
		return fmt.Errorf("signal connection %#x: %w", connID, err)
	}
	return nil
}

// EventWaiter returns the waiter for event flag flag (the channel's relid).
func (t *Transport) EventWaiter(flag uint32) (vmbus.Doorbell, error) {
	w, err := t.waiters.Add(flag)
	if errors.Is(err, synic.ErrClosed) {
		return nil, vmbus.ErrTransportClosed
	}
	return w, err
}

// Pages returns an allocator of pages guest physical pages for ring
// buffers, taken from the partition at once; Memory reaches them.
func (t *Transport) Pages(pages int) (*guestmem.PageAllocator, error) {
	gpa, err := AllocPages(pages)
	if err != nil {
		return nil, fmt.Errorf("hv: %d pages for ring buffers: %w", pages, err)
	}
	t.mem.add(gpa, uint64(pages)*pageSize)
	return guestmem.NewPageAllocator(gpa, gpa+uint64(pages)*pageSize)
}

// Close stops the SINT 2 handler and closes the waiters.
func (t *Transport) Close() error {
	t.once.Do(func() {
		close(t.quit)
		<-t.done
		t.waiters.Close()
	})
	return nil
}

// Memory is the part of guest physical memory the program holds pages
// of, seen through the physical window.
type Memory struct {
	mu     sync.RWMutex
	ranges [][2]uint64 // [gpa, end); guarded by mu
}

func (m *Memory) add(gpa, size uint64) {
	m.mu.Lock()
	m.ranges = append(m.ranges, [2]uint64{gpa, gpa + size})
	m.mu.Unlock()
}

// Slice returns the bytes at [gpa, gpa+length) if the program holds them.
func (m *Memory) Slice(gpa, length uint64) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, r := range m.ranges {
		if gpa >= r[0] && gpa < r[1] && length <= r[1]-gpa {
			return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), physicalWindow+gpa)), length), nil
		}
	}
	return nil, fmt.Errorf("hv: guest memory [%#x, +%#x) is not the program's", gpa, length)
}
