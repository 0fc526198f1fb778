package gen2

import (
	"encoding/binary"
	"time"

	"github.com/partita-hv/partita/partition/kvm"
)

// The enlightened guest ABI's hypercalls and SynIC, for a program at
// CPL3 (DESIGN.md, "The enlightened guest ABI").
//
// The hypercall page sits at HypercallPage in every program's address
// space. A program calls it with Hyper-V's register convention: RCX the
// control word (call code in bits 0-15, bit 16 fast), RDX the input (its
// own address of the input block, or the first fast argument), R8 the
// output; the status comes back in RAX. The page holds a port write and
// a ret: the write faults at CPL3, the worker serves the call and resumes
// at the ret. Addresses in hypercall inputs are the program's own.
//
// The SynIC message page and event-flags page of the program (one pair,
// for virtual processor 0, which is where VMBus delivers) sit at
// SynicMessagePage and SynicEventPage, in Hyper-V's layouts: 16 slots of
// 256 bytes, VMBus on SINT 2. The worker writes messages into the SINT's
// slot when it is free and queues them otherwise; the program frees the
// slot (message_type 0) and, when msg_pending was set, asks for the next
// with HvCallPartitaEOM. It sleeps until something arrives with
// HvCallPartitaWait.

// Fixed addresses in every Generation 2 program's address space.
const (
	HypercallPage    = 0x7FFFFE000000
	SynicMessagePage = 0x7FFFFE001000
	SynicEventPage   = 0x7FFFFE002000
)

// Hypercall codes: Hyper-V's, and Partita's own (0x8000 and up, where
// Hyper-V defines none).
const (
	HvCallPostMessage   = 0x005C
	HvCallSignalEvent   = 0x005D
	HvCallPartitaEOM    = 0x8001 // deliver the next queued message of SINT RDX
	HvCallPartitaWait   = 0x8002 // sleep until a message or event arrives, at most RDX microseconds
	hypercallFast       = 1 << 16
	maxMessagePayload   = 240
	synicSlots          = 16
	synicSlotSize       = 256
	maxQueuedMessages   = 64
	maxWaitMicroseconds = 10_000_000
)

// Hyper-V status codes.
const (
	hvStatusSuccess              = 0x0
	hvStatusInvalidHypercallCode = 0x2
	hvStatusInvalidAlignment     = 0x4
	hvStatusInvalidParameter     = 0x5
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

// hypercall serves a call through the hypercall page; the caller resumes
// the program after the page's port write.
func (p *Partition) hypercall(r *kvm.Regs) uint64 {
	control := r.RCX
	code := control & 0xFFFF
	fast := control&hypercallFast != 0
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case code == HvCallPostMessage && !fast:
		if r.RDX%8 != 0 {
			return hvStatusInvalidAlignment
		}
		in, ok := p.as.copyIn(r.RDX, 16+maxMessagePayload)
		if !ok {
			return hvStatusInvalidParameter
		}
		le := binary.LittleEndian
		conn, typ, size := le.Uint32(in), le.Uint32(in[8:]), le.Uint32(in[12:])
		if size > maxMessagePayload || typ == 0 || typ&0x80000000 != 0 {
			return hvStatusInvalidParameter
		}
		if p.cfg.Bus == nil {
			return hvStatusInvalidConnectionID
		}
		return uint64(p.cfg.Bus.PostMessage(conn&0xFFFFFF, typ, in[16:16+size]))
	case code == HvCallSignalEvent && fast:
		if p.cfg.Bus == nil {
			return hvStatusInvalidConnectionID
		}
		return uint64(p.cfg.Bus.SignalEvent(uint32(r.RDX)&0xFFFFFF, uint16(r.RDX>>32)))
	case code == HvCallPartitaEOM:
		if r.RDX >= synicSlots {
			return hvStatusInvalidParameter
		}
		p.deliverQueued(int(r.RDX))
		return hvStatusSuccess
	case code == HvCallPartitaWait:
		return p.waitSynic(min(r.RDX, maxWaitMicroseconds))
	}
	return hvStatusInvalidHypercallCode
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
	if sint < 0 || sint >= synicSlots || len(payload) > maxMessagePayload || messageType == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.synicQueue[sint]) >= maxQueuedMessages {
		return false
	}
	p.synicQueue[sint] = append(p.synicQueue[sint], synicMessage{messageType, append([]byte(nil), payload...)})
	p.deliverQueued(sint)
	return true
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

// synicWake wakes a program sleeping in HvCallPartitaWait; the caller
// holds p.mu.
func (p *Partition) synicWake() {
	close(p.synicChange)
	p.synicChange = make(chan struct{})
}

// waitSynic sleeps (p.mu released) until a message or event arrives, the
// timeout passes, or the partition ends.
func (p *Partition) waitSynic(us uint64) uint64 {
	change := p.synicChange
	p.mu.Unlock()
	defer p.mu.Lock()
	select {
	case <-change:
	case <-time.After(time.Duration(us) * time.Microsecond):
	case <-p.end:
	}
	return hvStatusSuccess
}
