package gen2

import (
	"encoding/binary"
	"time"

	"github.com/partita-hv/partita/partition/platform"
)

// The enlightened guest ABI's hypercalls and SynIC, for a program at
// CPL3 (DESIGN.md, "The enlightened guest ABI").
//
// The hypercall page sits at HypercallPage in every program's address
// space; its code is the platform's (platform.Program.HypercallCode), as
// on Hyper-V, where it is the hypervisor's. A program calls it with
// Hyper-V's register convention: RCX the control word (call code in bits
// 0-15, bit 16 fast), RDX the input (its own address of the input block,
// or the first fast argument), R8 the output; the status comes back in
// RAX, and RCX, RDX, R8 and the flags are not preserved.
//
//   - HvSignalEvent, fast, flag 0 (how VMBus signals a channel) is a
//     doorbell: each channel's doorbell is registered with the platform
//     on DoorbellPort, matching its connection id, and the platform rings
//     the root's eventfd itself (KVM: an ioeventfd, no exit; ptrace: one
//     trapped call that does not wake the shim). A connection id with no
//     doorbell reaches the shim as a hypercall, which answers as the slow
//     path would.
//   - everything else reaches the shim, which serves the call; the
//     program goes on after it. Addresses in hypercall inputs are the
//     program's own.
//
// The SynIC message page and event-flags page of the program (one pair,
// for virtual processor 0, which is where VMBus delivers) sit at
// SynicMessagePage and SynicEventPage, in Hyper-V's layouts: 16 slots of
// 256 bytes, VMBus on SINT 2. The worker writes messages into the SINT's
// slot when it is free and queues them otherwise; the program frees the
// slot (message_type 0) and, when msg_pending was set, asks for the next
// with HvCallPartitaEOM. It sleeps until something arrives with
// HvCallPartitaWait, or with the SysSynicWait system call (which a Go
// program can make through package syscall, so that its runtime knows
// the thread is blocked). A wake that finds no sleeper is kept for the
// next wait, so a program that checks its pages and then waits loses
// nothing that arrived in between.
//
// Shared memory needs physical addresses: HvCallPartitaAllocPages gives
// the program physically contiguous zeroed pages, mapped at
// PhysicalWindow plus their guest physical address, which the program
// can then name in GPADLs.

// Fixed addresses in every Generation 2 program's address space.
const (
	HypercallPage    = platform.HypercallPage
	SynicMessagePage = 0x7FFFFE001000
	SynicEventPage   = 0x7FFFFE002000
	// PhysicalWindow + GPA: pages from HvCallPartitaAllocPages. It holds
	// the largest partition's memory (64 GiB) below the fixed pages.
	PhysicalWindow = 0x7F0000000000
)

// Hypercall codes: Hyper-V's, and Partita's own (0x8000 and up, where
// Hyper-V defines none).
const (
	HvCallPostMessage       = 0x005C
	HvCallSignalEvent       = 0x005D
	HvCallPartitaEOM        = 0x8001 // deliver the next queued message of SINT RDX
	HvCallPartitaWait       = 0x8002 // sleep until a message or event arrives, at most RDX microseconds
	HvCallPartitaAllocPages = 0x8003 // RDX pages, physically contiguous; their GPA goes to the 8 bytes at R8
	HvCallPartitaFreePages  = 0x8004 // free RDX, a GPA AllocPages gave, of R8 pages
	hypercallFast           = 1 << 16
	maxMessagePayload       = 240
	synicSlots              = 16
	synicSlotSize           = 256
	maxQueuedMessages       = 64
	maxWaitMicroseconds     = 10_000_000
	maxAllocPages           = 1 << 16 // 256 MiB in one call
)

// SysSynicWait is Partita's system call for HvCallPartitaWait: a0 the
// longest sleep in microseconds (at most 10 s). It returns 0.
const SysSynicWait = 1000

// Hyper-V status codes.
const (
	hvStatusSuccess              = 0x0
	hvStatusInvalidHypercallCode = 0x2
	hvStatusInvalidAlignment     = 0x4
	hvStatusInvalidParameter     = 0x5
	hvStatusInsufficientMemory   = 0xB
	hvStatusInvalidConnectionID  = 0x12
	hvStatusInsufficientBuffers  = 0x13
)

// Bus is where a program's messages and events go: the partition's VMBus
// host. It answers with a Hyper-V status.
type Bus interface {
	PostMessage(connectionID, messageType uint32, payload []byte) uint16
	SignalEvent(connectionID uint32, flag uint16) uint16
}

// synicMessage is a message waiting for its slot.
type synicMessage struct {
	messageType uint32
	payload     []byte
}

// hypercall serves a call through the hypercall page (control, input
// and output are RCX, RDX and R8) and returns its status; the platform
// resumes the program after the call. Bus calls are made without p.mu,
// so a bus that waits on the root never holds up the partition.
func (p *Partition) hypercall(control, input, output uint64) uint64 {
	code := control & 0xFFFF
	fast := control&hypercallFast != 0
	p.hypercalls.Add(1)
	switch {
	case code == HvCallPostMessage && !fast:
		if input%8 != 0 {
			return hvStatusInvalidAlignment
		}
		p.mu.Lock()
		in, ok := p.as.copyIn(input, 16+maxMessagePayload)
		p.mu.Unlock()
		if !ok {
			return hvStatusInvalidParameter
		}
		le := binary.LittleEndian
		conn, typ, size := le.Uint32(in), le.Uint32(in[8:]), le.Uint32(in[12:])
		if size > maxMessagePayload || typ == 0 || typ&0x80000000 != 0 {
			return hvStatusInvalidParameter
		}
		if p.bus == nil {
			return hvStatusInvalidConnectionID
		}
		return uint64(p.bus.PostMessage(conn&0xFFFFFF, typ, in[16:16+size]))
	case code == HvCallSignalEvent && fast:
		if input>>32 == 0 {
			// The page sends these to a doorbell: this one matched none.
			p.doorbellExits.Add(1)
		}
		if p.bus == nil {
			return hvStatusInvalidConnectionID
		}
		return uint64(p.bus.SignalEvent(uint32(input)&0xFFFFFF, uint16(input>>32)))
	case code == HvCallPartitaEOM:
		if input >= synicSlots {
			return hvStatusInvalidParameter
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.deliverQueued(int(input))
		return hvStatusSuccess
	case code == HvCallPartitaWait:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.waitSynic(min(input, maxWaitMicroseconds))
	case code == HvCallPartitaAllocPages:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.allocPages(input, output)
	case code == HvCallPartitaFreePages:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.freePages(input, output)
	}
	return hvStatusInvalidHypercallCode
}

// allocPages serves HvCallPartitaAllocPages; the caller holds p.mu.
func (p *Partition) allocPages(pages, out uint64) uint64 {
	if pages == 0 || pages > maxAllocPages || out%8 != 0 {
		return hvStatusInvalidParameter
	}
	if !p.as.copyOut(out, make([]byte, 8)) {
		return hvStatusInvalidParameter
	}
	gpa, err := p.as.allocContiguous(pages, PhysicalWindow)
	if err != nil {
		return hvStatusInsufficientMemory
	}
	p.physAllocs[gpa] = pages
	p.as.copyOut(out, binary.LittleEndian.AppendUint64(nil, gpa))
	return hvStatusSuccess
}

// freePages serves HvCallPartitaFreePages; the caller holds p.mu. The
// pages stay mapped in the window (see addressSpace.allocContiguous).
func (p *Partition) freePages(gpa, pages uint64) uint64 {
	if n, ok := p.physAllocs[gpa]; !ok || n != pages {
		return hvStatusInvalidParameter
	}
	delete(p.physAllocs, gpa)
	p.as.freeContiguous(gpa, pages)
	return hvStatusSuccess
}

// synicSlot returns the frame bytes of a SINT's slot in a SynIC page.
func (p *Partition) synicSlot(page uint64, sint int) []byte {
	pa, ok := p.as.translate(page, true)
	if !ok {
		return nil // the page is always mapped; unreachable in practice
	}
	off := pa + uint64(sint*synicSlotSize)
	return p.mem.Bytes()[off : off+synicSlotSize]
}

// DeliverMessage puts a message in SINT sint's slot, or queues it behind
// the one there (setting its msg_pending flag); false if the queue is
// full. The program is woken.
func (p *Partition) DeliverMessage(sint int, messageType uint32, payload []byte) bool {
	ok, _ := p.enqueueMessage(sint, messageType, payload)
	return ok
}

// DeliverMessageWait is DeliverMessage that waits while the queue is
// full; false if the message is bad or the partition has ended.
func (p *Partition) DeliverMessageWait(sint int, messageType uint32, payload []byte) bool {
	for {
		ok, room := p.enqueueMessage(sint, messageType, payload)
		if ok || room == nil {
			return ok
		}
		select {
		case <-room:
		case <-p.end:
			return false
		}
	}
}

// enqueueMessage queues a message for sint's slot. When the queue is
// full it returns a channel closed once there is room; neither, for a bad
// message.
func (p *Partition) enqueueMessage(sint int, messageType uint32, payload []byte) (bool, <-chan struct{}) {
	if sint < 0 || sint >= synicSlots || len(payload) > maxMessagePayload || messageType == 0 {
		return false, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.synicQueue[sint]) >= maxQueuedMessages {
		return false, p.synicRoom
	}
	p.synicQueue[sint] = append(p.synicQueue[sint], synicMessage{messageType, append([]byte(nil), payload...)})
	p.deliverQueued(sint)
	return true, nil
}

// deliverQueued moves the first queued message of sint into its slot if
// the slot is free; the caller holds p.mu.
func (p *Partition) deliverQueued(sint int) {
	slot := p.synicSlot(SynicMessagePage, sint)
	if slot == nil || len(p.synicQueue[sint]) == 0 {
		return
	}
	le := binary.LittleEndian
	if le.Uint32(slot) != 0 {
		slot[5] |= 1 // msg_pending: ask for an EOM
		return
	}
	m := p.synicQueue[sint][0]
	p.synicQueue[sint] = p.synicQueue[sint][1:]
	close(p.synicRoom)
	p.synicRoom = make(chan struct{})
	clear(slot[4:])
	slot[4] = byte(len(m.payload))
	if len(p.synicQueue[sint]) > 0 {
		slot[5] = 1
	}
	copy(slot[16:], m.payload)
	le.PutUint32(slot, m.messageType) // last: the slot is the program's from here
	p.synicWake()
}

// SetEventFlag sets flag in SINT sint's event-flags slot and wakes the
// program.
func (p *Partition) SetEventFlag(sint int, flag uint16) bool {
	if sint < 0 || sint >= synicSlots || int(flag) >= synicSlotSize*8 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	slot := p.synicSlot(SynicEventPage, sint)
	if slot == nil {
		return false
	}
	slot[flag/8] |= 1 << (flag % 8)
	p.synicWake()
	return true
}

// synicWake wakes a program sleeping in HvCallPartitaWait, or its next
// wait if none sleeps; the caller holds p.mu.
func (p *Partition) synicWake() {
	p.synicPending = true
	close(p.synicChange)
	p.synicChange = make(chan struct{})
}

// waitSynic sleeps (p.mu released) until a message or event arrives, the
// timeout passes, or the partition ends; it returns at once if one
// arrived since the last wait.
func (p *Partition) waitSynic(us uint64) uint64 {
	if p.synicPending {
		p.synicPending = false
		return hvStatusSuccess
	}
	change := p.synicChange
	p.mu.Unlock()
	waitFor(time.Duration(us)*time.Microsecond, change, p.end)
	p.mu.Lock()
	p.synicPending = false
	return hvStatusSuccess
}
