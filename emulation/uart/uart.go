// Package uart models the National Semiconductor (now TI) PC16550D UART as
// it appears at COM1–COM4 on a PC: the eight byte-wide registers, the
// divisor latch, the 16-byte receive FIFO, interrupt identification with the
// datasheet's priorities, modem control and status, internal loopback and
// the scratch register. Section numbers below refer to the PC16550D
// datasheet (National Semiconductor, June 1995; TI SNLS378).
//
// The model is a state machine with no clock. A byte written to THR is
// transmitted at once — handed to the output writer, or in loopback put in
// the receive FIFO — so THR and the transmitter are always empty and LSR
// THRE and TEMT always read 1. Bytes from the host side arrive through
// Receive.
//
// Left out: baud-rate timing (the divisor is stored and read back but paces
// nothing); word length, stop bits and parity (every byte travels as 8 data
// bits; LCR is stored and read back); parity, framing and break errors
// (LSR bits 2–4 and 7 are always 0) and the break-control bit; the transmit
// FIFO as a queue (it is always empty); DMA mode and the RXRDY/TXRDY pins;
// the four-character-time timeout (a character-timeout interrupt is
// reported whenever the receive FIFO holds data below its trigger level);
// the real modem inputs (outside loopback the far end is a terminal holding
// CTS, DSR and DCD asserted, RI off, and never changing them); and the
// 16450-mode detail that an overrun replaces the character in RBR (here, in
// both modes, the character that does not fit is the one lost, as in FIFO
// mode, §8.6 LSR1). Host input is flow-controlled rather than overrun: see
// Receive, and ReceiveAll, which waits for the guest to make room.
//
// The interrupt line is wired as on a PC: the UART's INTR output reaches
// the interrupt controller only while MCR OUT2 is set. A guest's OUT2 bit
// gates the line even in loopback (on the real part the OUT2 pin is forced
// inactive in loopback; guests do not rely on interrupts there).
//
// # Locking
//
// A UART is called from vCPU threads (Read, Write) and from the console
// input goroutine (Receive). mu guards the register state. Effects — bytes
// for the output writer and changes of the interrupt level — are collected
// under mu and delivered after it is released, under emitMu, which is taken
// before mu is dropped so that effects reach the writer and the interrupt
// controller in the order the state changes happened. Lock order: mu, then
// emitMu. The output writer and the irq callback therefore run without mu
// and may take other locks, but must not call back into the same UART.
package uart

import (
	"io"
	"sync"
	"sync/atomic"
)

// Register offsets from the UART's base port (§8.1, Table II).
const (
	regData = 0 // RBR (read), THR (write); DLL when DLAB is set
	regIER  = 1 // DLM when DLAB is set
	regIIR  = 2 // IIR (read), FCR (write)
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
)

// IER bits (§8.5).
const (
	ierRDA  = 1 << 0 // received data available (and character timeout)
	ierTHRE = 1 << 1 // transmitter holding register empty
	ierRLS  = 1 << 2 // receiver line status
	ierMS   = 1 << 3 // modem status
	ierMask = 0x0f   // bits 4-7 are always 0
)

// IIR values (§8.4, Table IV). Bit 0 clear means an interrupt is pending.
const (
	iirNone    = 0x01
	iirRLS     = 0x06
	iirRDA     = 0x04
	iirTimeout = 0x0c
	iirTHRE    = 0x02
	iirMS      = 0x00
	iirFIFO    = 0xc0 // bits 6-7: FCR0 is set
)

// FCR bits (§8.3).
const (
	fcrEnable   = 1 << 0
	fcrRxReset  = 1 << 1 // FCR2, transmit FIFO reset, has nothing to do
	fcrTrigger  = 0xc0
	fcrTrigShft = 6
)

// LCR bits (§8.2).
const lcrDLAB = 1 << 7

// MCR bits (§8.7).
const (
	mcrDTR  = 1 << 0
	mcrRTS  = 1 << 1
	mcrOUT1 = 1 << 2
	mcrOUT2 = 1 << 3
	mcrLoop = 1 << 4
	mcrMask = 0x1f // bits 5-7 are always 0
)

// LSR bits (§8.6).
const (
	lsrDR   = 1 << 0
	lsrOE   = 1 << 1
	lsrTHRE = 1 << 5
	lsrTEMT = 1 << 6
)

// MSR bits (§8.8): deltas in the low nibble, line states in the high.
const (
	msrDCTS  = 1 << 0
	msrDDSR  = 1 << 1
	msrTERI  = 1 << 2
	msrDDCD  = 1 << 3
	msrCTS   = 1 << 4
	msrDSR   = 1 << 5
	msrRI    = 1 << 6
	msrDCD   = 1 << 7
	msrDelta = 0x0f
)

// farEnd is the modem-input state outside loopback: a terminal that holds
// CTS, DSR and DCD asserted.
const farEnd = msrCTS | msrDSR | msrDCD

// fifoSize is the depth of the receive FIFO (§1).
const fifoSize = 16

// triggers maps FCR bits 6-7 to the receive trigger level (§8.3, Table V).
var triggers = [4]int{1, 4, 8, 14}

// Stats counts a UART's traffic.
type Stats struct {
	Transmitted  uint64 // bytes written to THR (loopback included)
	Received     uint64 // bytes that entered the receive FIFO (loopback included)
	Overruns     uint64 // looped-back bytes lost because the receive FIFO was full
	OutputErrors uint64 // writes to the output writer that failed or came up short
}

// UART is one 16550A. Its methods are safe for concurrent use.
type UART struct {
	out io.Writer        // nil: transmitted bytes are discarded
	irq func(level bool) // nil: the line goes nowhere

	// emitMu serializes delivery of effects; see the package comment.
	emitMu sync.Mutex

	mu sync.Mutex
	// All fields below are guarded by mu.
	dll, dlm uint8
	ier      uint8
	lcr      uint8
	mcr      uint8
	scr      uint8
	fifo     bool  // FCR0
	trigBits uint8 // FCR bits 6-7 as last programmed
	rx       [fifoSize]byte
	rxHead   int  // index of the oldest byte in rx
	rxCount  int  // bytes in rx; at most capacityLocked()
	oe       bool // LSR OE: set by an overrun, cleared by reading LSR
	// threPending is the THRE interrupt condition (§8.4): set when THR
	// becomes empty and when IER bit 1 goes from 0 to 1, cleared by
	// reading IIR while it is the reported source and by writing THR.
	threPending bool
	lines       uint8 // MSR bits 4-7: the current modem-input states
	deltas      uint8 // MSR bits 0-3, cleared by reading MSR
	level       bool  // interrupt level last reported through irq
	// room, if not nil, is closed (and reset to nil) when the receive
	// FIFO gains room: a ReceiveAll waiting for the guest sleeps on it.
	room chan struct{}

	transmitted, received, overruns, outputErrors atomic.Uint64
}

// New makes a UART whose transmitted bytes go to out (may be nil:
// discarded) and which raises/lowers its interrupt line through irq (may be
// nil). The registers start at their reset values (§8.10, Table VIII); the
// divisor, which reset leaves undefined, starts at 12 (9600 baud).
func New(out io.Writer, irq func(level bool)) *UART {
	return &UART{out: out, irq: irq, dll: 12, lines: farEnd}
}

// effects are what one call produces for the world outside the UART.
type effects struct {
	tx         [8]byte // at most one THR write per byte of an access
	ntx        int
	irqChanged bool
	level      bool
}

// Read performs a guest read at offset from the base port. Each byte of a
// wider access reads the register at the next offset; bytes past offset 7
// read as 0xFF, as from an undecoded port.
func (u *UART) Read(offset uint64, data []byte) {
	u.mu.Lock()
	for i := range data {
		if offset > regSCR || uint64(i) > regSCR-offset {
			data[i] = 0xff
			continue
		}
		data[i] = u.readLocked(offset + uint64(i))
	}
	var e effects
	u.unlockAndEmit(&e)
}

// Write performs a guest write at offset from the base port. Each byte of
// a wider access writes the register at the next offset; bytes past offset
// 7 are dropped.
func (u *UART) Write(offset uint64, data []byte) {
	u.mu.Lock()
	var e effects
	for i, b := range data {
		if offset > regSCR || uint64(i) > regSCR-offset {
			break
		}
		u.writeLocked(offset+uint64(i), b, &e)
	}
	u.unlockAndEmit(&e)
}

// Receive queues bytes from the host side (console input) into the receive
// FIFO and returns how many were accepted: the FIFO holds 16 bytes, or 1
// with FIFOs disabled. Bytes beyond that are not taken and stay the
// caller's to offer again later, as a flow-controlled line would hold them
// back; they are not an overrun. (Overruns happen in loopback, where the
// guest itself transmits into a full FIFO.) Safe to call from any
// goroutine.
func (u *UART) Receive(b []byte) int {
	u.mu.Lock()
	n := 0
	for _, c := range b {
		if !u.pushLocked(c) {
			break
		}
		n++
	}
	var e effects
	u.unlockAndEmit(&e)
	return n
}

// ReceiveAll queues all of b into the receive FIFO, waiting whenever it is
// full until the guest makes room (reads RBR, resets the FIFO or switches
// FIFO mode), and returns how many bytes were accepted: len(b), or fewer
// if done is closed first. No byte is dropped or overrun: those not
// accepted stay the caller's. Safe to call from any goroutine; the bytes
// of concurrent callers may interleave.
func (u *UART) ReceiveAll(b []byte, done <-chan struct{}) int {
	n := 0
	for {
		u.mu.Lock()
		for n < len(b) && u.pushLocked(b[n]) {
			n++
		}
		var room chan struct{}
		if n < len(b) {
			// Taken under mu, like the full FIFO it waits on: no room can
			// appear unseen between the two.
			if u.room == nil {
				u.room = make(chan struct{})
			}
			room = u.room
		}
		var e effects
		u.unlockAndEmit(&e)
		if room == nil {
			return n
		}
		select {
		case <-room:
		case <-done:
			return n
		}
	}
}

// roomLocked wakes ReceiveAll callers waiting for room in the FIFO.
func (u *UART) roomLocked() {
	if u.room != nil {
		close(u.room)
		u.room = nil
	}
}

// Stats returns the traffic counters.
func (u *UART) Stats() Stats {
	return Stats{
		Transmitted:  u.transmitted.Load(),
		Received:     u.received.Load(),
		Overruns:     u.overruns.Load(),
		OutputErrors: u.outputErrors.Load(),
	}
}

// unlockAndEmit is called with mu held and releases it. It works out
// whether the interrupt level changed, then delivers e's effects in order
// without holding mu.
func (u *UART) unlockAndEmit(e *effects) {
	level := u.mcr&mcrOUT2 != 0 && u.identifyLocked() != iirNone
	if level != u.level {
		u.level = level
		e.irqChanged, e.level = true, level
	}
	if e.ntx == 0 && !e.irqChanged {
		u.mu.Unlock()
		return
	}
	u.emitMu.Lock()
	u.mu.Unlock()
	defer u.emitMu.Unlock()
	if e.ntx > 0 && u.out != nil {
		if n, err := u.out.Write(e.tx[:e.ntx]); err != nil || n < e.ntx {
			u.outputErrors.Add(1)
		}
	}
	if e.irqChanged && u.irq != nil {
		u.irq(e.level)
	}
}

func (u *UART) readLocked(off uint64) uint8 {
	switch off {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			return u.dll
		}
		return u.popLocked()
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			return u.dlm
		}
		return u.ier
	case regIIR:
		id := u.identifyLocked()
		// §8.4, Table IV: reading IIR clears a THRE interrupt only if
		// THRE is the source it reports.
		if id == iirTHRE {
			u.threPending = false
		}
		if u.fifo {
			id |= iirFIFO
		}
		return id
	case regLCR:
		return u.lcr
	case regMCR:
		return u.mcr
	case regLSR:
		v := uint8(lsrTHRE | lsrTEMT)
		if u.rxCount > 0 {
			v |= lsrDR
		}
		if u.oe {
			v |= lsrOE
		}
		// §8.6: OE (like PE, FE and BI) is reset whenever LSR is read;
		// this also clears the receiver-line-status interrupt.
		u.oe = false
		return v
	case regMSR:
		v := u.lines | u.deltas
		u.deltas = 0 // §8.8: the delta bits reset when MSR is read
		return v
	default: // regSCR
		return u.scr
	}
}

func (u *UART) writeLocked(off uint64, v uint8, e *effects) {
	switch off {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			u.dll = v
			return
		}
		u.transmitLocked(v, e)
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			u.dlm = v
			return
		}
		old := u.ier
		u.ier = v & ierMask
		// THR is always empty, so enabling the THRE interrupt raises it
		// at once, as on the real part.
		if old&ierTHRE == 0 && u.ier&ierTHRE != 0 {
			u.threPending = true
		}
	case regIIR: // FCR
		u.writeFCRLocked(v)
	case regLCR:
		u.lcr = v
	case regMCR:
		u.mcr = v & mcrMask
		u.updateLinesLocked()
	case regLSR, regMSR:
		// §8.6, §8.8: writing these is for factory test only; ignore.
	default: // regSCR
		u.scr = v
	}
}

// transmitLocked sends v: out through e, or back into the receive FIFO in
// loopback (§8.7 MCR4: the transmitter output is looped to the receiver
// input and the serial output is held marking).
func (u *UART) transmitLocked(v uint8, e *effects) {
	u.transmitted.Add(1)
	if u.mcr&mcrLoop != 0 {
		if !u.pushLocked(v) {
			u.oe = true
			u.overruns.Add(1)
		}
	} else if e.ntx < len(e.tx) {
		e.tx[e.ntx] = v
		e.ntx++
	}
	// Writing THR clears the THRE interrupt, but the byte leaves at once
	// and THR is empty again, which sets it (§8.4).
	u.threPending = true
}

// writeFCRLocked applies an FCR write (§8.3). Changing FCR0 clears both
// FIFOs; the other bits are programmed only when FCR0 is written as 1.
func (u *UART) writeFCRLocked(v uint8) {
	enable := v&fcrEnable != 0
	if enable != u.fifo {
		u.rxHead, u.rxCount = 0, 0
		u.roomLocked()
	}
	u.fifo = enable
	if !enable {
		return
	}
	u.trigBits = (v & fcrTrigger) >> fcrTrigShft
	if v&fcrRxReset != 0 {
		// The receive shift register and LSR are not touched.
		u.rxHead, u.rxCount = 0, 0
		u.roomLocked()
	}
}

// updateLinesLocked recomputes the modem inputs after MCR changed and sets
// the delta bits for those that moved (§8.8). In loopback the inputs are
// wired to the outputs: CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2 (§8.7 MCR4).
func (u *UART) updateLinesLocked() {
	lines := uint8(farEnd)
	if u.mcr&mcrLoop != 0 {
		lines = 0
		if u.mcr&mcrRTS != 0 {
			lines |= msrCTS
		}
		if u.mcr&mcrDTR != 0 {
			lines |= msrDSR
		}
		if u.mcr&mcrOUT1 != 0 {
			lines |= msrRI
		}
		if u.mcr&mcrOUT2 != 0 {
			lines |= msrDCD
		}
	}
	changed := lines ^ u.lines
	if changed&msrCTS != 0 {
		u.deltas |= msrDCTS
	}
	if changed&msrDSR != 0 {
		u.deltas |= msrDDSR
	}
	// TERI reports only the trailing edge of RI: on to off (§8.8 MSR2).
	if changed&msrRI != 0 && lines&msrRI == 0 {
		u.deltas |= msrTERI
	}
	if changed&msrDCD != 0 {
		u.deltas |= msrDDCD
	}
	u.lines = lines
}

// identifyLocked returns the IIR bits 0-3 for the highest-priority pending
// interrupt (§8.4, Table IV), without side effects.
func (u *UART) identifyLocked() uint8 {
	switch {
	case u.ier&ierRLS != 0 && u.oe:
		return iirRLS
	case u.ier&ierRDA != 0 && u.rxCount >= u.triggerLocked():
		return iirRDA
	case u.ier&ierRDA != 0 && u.rxCount > 0:
		// Only reachable in FIFO mode: without FIFOs the trigger is 1.
		return iirTimeout
	case u.ier&ierTHRE != 0 && u.threPending:
		return iirTHRE
	case u.ier&ierMS != 0 && u.deltas != 0:
		return iirMS
	}
	return iirNone
}

func (u *UART) triggerLocked() int {
	if !u.fifo {
		return 1
	}
	return triggers[u.trigBits]
}

func (u *UART) capacityLocked() int {
	if !u.fifo {
		return 1
	}
	return fifoSize
}

// pushLocked puts c in the receive FIFO, reporting false if it is full.
// The caller records the overrun.
func (u *UART) pushLocked(c uint8) bool {
	if u.rxCount >= u.capacityLocked() {
		return false
	}
	u.rx[(u.rxHead+u.rxCount)%fifoSize] = c
	u.rxCount++
	u.received.Add(1)
	return true
}

// popLocked takes the oldest byte from the receive FIFO; an empty FIFO
// reads as 0.
func (u *UART) popLocked() uint8 {
	if u.rxCount == 0 {
		return 0
	}
	c := u.rx[u.rxHead]
	u.rxHead = (u.rxHead + 1) % fifoSize
	u.rxCount--
	u.roomLocked()
	return c
}
