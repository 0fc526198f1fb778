// Package i8042 models the PC keyboard controller (Intel 8042 as in the
// IBM PC/AT, ports 0x60 data and 0x64 status/command) with a keyboard and
// an auxiliary (PS/2 mouse) device behind it, as far as firmware and
// operating systems probe and initialise them, and its output port's reset
// line.
//
// Modelled: the status register (OBF, IBF never set since commands take
// effect at once, system flag, command/data, aux-data flag), the command
// byte (interrupt enables, port disables, translation stored), controller
// commands 0x20/0x60 (read/write command byte), 0xA7/0xA8/0xA9 (aux
// disable/enable/test), 0xAA (self test), 0xAB (keyboard interface test),
// 0xAD/0xAE (keyboard disable/enable), 0xD0/0xD1 (output port), 0xD2/0xD3/
// 0xD4 (write to keyboard or aux output / to the aux device) and 0xFE
// (pulse the reset line); the keyboard's reset (0xFF: ACK, BAT passed),
// identify (0xF2), enable/disable scanning (0xF4/0xF5), set LEDs, typematic
// and scancode set (with their argument byte), echo; the aux device's
// reset (ACK, 0xAA, id 0) and acknowledgement of its other commands.
// Interrupts: IRQ 1 for keyboard data, IRQ 12 for aux data, each when its
// enable bit in the command byte is set.
//
// Left out: key and mouse input from the host, typematic repeat, scancode
// translation tables, and the A20 gate (bit 1 of the output port is stored
// but KVM's address space has no A20 wrap).
package i8042

import "sync"

// Ports. The controller is registered as two one-byte ports (DataPort at
// 0x60, CommandPort at 0x64) so that 0x61-0x63 stay free for port B.
const (
	DataPortBase    = 0x60
	CommandPortBase = 0x64
	offData         = 0
	offCommand      = 4
)

// Status register bits.
const (
	stOBF    = 1 << 0
	stSys    = 1 << 2
	stCmd    = 1 << 3 // last write was to the command port
	stAuxOBF = 1 << 5
)

// Command byte bits.
const (
	cbKbdInt  = 1 << 0
	cbAuxInt  = 1 << 1
	cbSys     = 1 << 2
	cbKbdOff  = 1 << 4
	cbAuxOff  = 1 << 5
	cbXlate   = 1 << 6
	resetLine = 1 << 0 // output port bit 0: 0 asserts reset
)

// Config connects the controller.
type Config struct {
	IRQ1, IRQ12 func(level bool) // may be nil
	Reset       func()           // the guest pulsed the reset line
}

// Controller is the 8042 with its two devices.
type Controller struct {
	cfg Config

	mu      sync.Mutex
	queue   []qbyte // bytes waiting for the guest; guarded by mu
	cmdByte byte    // guarded by mu
	status  byte    // guarded by mu
	pending byte    // controller command awaiting its data byte; guarded by mu
	kbdArg  byte    // keyboard command awaiting its argument; guarded by mu
	outPort byte    // guarded by mu
	irq1    bool    // line levels last reported; guarded by mu
	irq12   bool    // guarded by mu
	resets  int     // guarded by mu
}

type qbyte struct {
	b   byte
	aux bool
}

// maxQueue bounds the output queue against a guest that never reads.
const maxQueue = 16

// New makes a controller after power-on self test.
func New(cfg Config) *Controller {
	return &Controller{cfg: cfg, cmdByte: cbKbdInt | cbSys | cbXlate, status: stSys, outPort: 0xCF}
}

// Port is one of the controller's two ports, as a bus.Device.
type Port struct {
	c   *Controller
	off uint64
}

// DataPort is port 0x60.
func (c *Controller) DataPort() Port { return Port{c, offData} }

// CommandPort is port 0x64 (status on read, command on write).
func (c *Controller) CommandPort() Port { return Port{c, offCommand} }

// Read implements bus.Device; a wider access repeats the byte access.
func (p Port) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = p.c.readByte(p.off)
	}
}

// Write implements bus.Device; each byte is a separate write.
func (p Port) Write(_ uint64, data []byte) {
	for _, b := range data {
		p.c.writeByte(p.off, b)
	}
}

func (c *Controller) readByte(off uint64) byte {
	c.mu.Lock()
	var v byte = 0xFF
	switch off {
	case offData:
		if len(c.queue) > 0 {
			v = c.queue[0].b
			c.queue = c.queue[1:]
		} else {
			v = 0
		}
	case offCommand:
		v = c.statusLocked()
	}
	c.mu.Unlock()
	c.deliver()
	return v
}

func (c *Controller) statusLocked() byte {
	s := c.status &^ (stOBF | stAuxOBF)
	if len(c.queue) > 0 {
		s |= stOBF
		if c.queue[0].aux {
			s |= stAuxOBF
		}
	}
	return s
}

func (c *Controller) writeByte(off uint64, b byte) {
	reset := false
	c.mu.Lock()
	switch off {
	case offCommand:
		c.status |= stCmd
		reset = c.commandLocked(b)
	case offData:
		c.status &^= stCmd
		reset = c.dataLocked(b)
	}
	c.mu.Unlock()
	c.deliver()
	if reset && c.cfg.Reset != nil {
		c.cfg.Reset()
	}
}

// commandLocked runs a controller command; it reports a reset pulse.
func (c *Controller) commandLocked(b byte) bool {
	c.pending = 0
	switch b {
	case 0x20:
		c.pushLocked(c.cmdByte, false)
	case 0x60, 0xD1, 0xD2, 0xD3, 0xD4:
		c.pending = b
	case 0xA7:
		c.cmdByte |= cbAuxOff
	case 0xA8:
		c.cmdByte &^= cbAuxOff
	case 0xA9, 0xAB: // interface tests: no error
		c.pushLocked(0x00, false)
	case 0xAA: // self test passed
		c.pushLocked(0x55, false)
	case 0xAD:
		c.cmdByte |= cbKbdOff
	case 0xAE:
		c.cmdByte &^= cbKbdOff
	case 0xD0:
		c.pushLocked(c.outPort, false)
	default:
		// 0xF0-0xFF pulse output-port bits low for 6 us; bit 0 is reset.
		if b >= 0xF0 && b&resetLine == 0 {
			c.resets++
			return true
		}
	}
	return false
}

// dataLocked handles a byte written to port 0x60: the argument of a
// pending controller command, or a byte for the keyboard.
func (c *Controller) dataLocked(b byte) bool {
	cmd := c.pending
	c.pending = 0
	switch cmd {
	case 0x60:
		c.cmdByte = b
		if b&cbSys != 0 {
			c.status |= stSys
		} else {
			c.status &^= stSys
		}
	case 0xD1:
		c.outPort = b
		if b&resetLine == 0 {
			c.resets++
			return true
		}
	case 0xD2:
		c.pushLocked(b, false)
	case 0xD3:
		c.pushLocked(b, true)
	case 0xD4:
		c.auxLocked(b)
	default:
		c.keyboardLocked(b)
	}
	return false
}

// keyboardLocked is the keyboard's command interpreter.
func (c *Controller) keyboardLocked(b byte) {
	if c.kbdArg != 0 { // the argument of LEDs, typematic or scancode set
		c.kbdArg = 0
		c.pushLocked(0xFA, false)
		return
	}
	switch b {
	case 0xFF: // reset: ACK, then BAT passed
		c.pushLocked(0xFA, false)
		c.pushLocked(0xAA, false)
	case 0xF2: // identify: MF2 keyboard
		c.pushLocked(0xFA, false)
		c.pushLocked(0xAB, false)
		c.pushLocked(0x83, false)
	case 0xED, 0xF3, 0xF0:
		c.kbdArg = b
		c.pushLocked(0xFA, false)
	case 0xEE: // echo
		c.pushLocked(0xEE, false)
	default: // enable, disable, defaults, ...: acknowledged
		c.pushLocked(0xFA, false)
	}
}

// auxLocked is the PS/2 mouse's command interpreter.
func (c *Controller) auxLocked(b byte) {
	switch b {
	case 0xFF: // reset: ACK, BAT passed, device id 0
		c.pushLocked(0xFA, true)
		c.pushLocked(0xAA, true)
		c.pushLocked(0x00, true)
	case 0xF2: // get device id
		c.pushLocked(0xFA, true)
		c.pushLocked(0x00, true)
	default:
		c.pushLocked(0xFA, true)
	}
}

func (c *Controller) pushLocked(b byte, aux bool) {
	if len(c.queue) < maxQueue {
		c.queue = append(c.queue, qbyte{b, aux})
	}
}

// deliver updates the IRQ lines from the head of the queue.
func (c *Controller) deliver() {
	c.mu.Lock()
	var kbd, aux bool
	if len(c.queue) > 0 {
		if c.queue[0].aux {
			aux = c.cmdByte&cbAuxInt != 0
		} else {
			kbd = c.cmdByte&cbKbdInt != 0
		}
	}
	change1, change12 := kbd != c.irq1, aux != c.irq12
	c.irq1, c.irq12 = kbd, aux
	c.mu.Unlock()
	if change1 && c.cfg.IRQ1 != nil {
		c.cfg.IRQ1(kbd)
	}
	if change12 && c.cfg.IRQ12 != nil {
		c.cfg.IRQ12(aux)
	}
}

// Resets is how often the guest pulsed the reset line.
func (c *Controller) Resets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resets
}
