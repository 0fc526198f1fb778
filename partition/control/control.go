// Package control is the protocol between the root service (vmms) and a
// worker process (vmwp): one SOCK_SEQPACKET socket pair per running
// partition, one JSON message per record, file descriptors (the partition's
// guest-memory memfd) passed alongside with SCM_RIGHTS.
//
// The root sends requests (start, pause, resume, turn-off, power-button,
// stats), each with a sequence number; the worker answers each with a reply
// carrying the same number, and sends one unsolicited "stopped" event when
// its partition stops, after its disks are flushed. COM1 does not ride on
// this socket: it is the worker's standard output and input, and the
// worker's log lines are its standard error.
//
// Either side treats the other as untrusted: a record that is too long,
// not one JSON object of known fields, or that carries more descriptors than
// its type allows is an error, and the descriptors that came with it are
// closed.
package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Message types.
const (
	// Requests, root to worker.
	TypeStart       = "start"        // Start set; fds: the guest-memory memfd, then the VMBus socket if Start.VMBus
	TypePause       = "pause"        // park every vCPU
	TypeResume      = "resume"       // run them again
	TypeTurnOff     = "turn-off"     // stop now, like pulling the plug
	TypePowerButton = "power-button" // press the ACPI power button
	TypeStats       = "stats"        // reply carries Stats

	// Worker to root.
	TypeReply   = "reply"   // answers request Seq; Error set on failure
	TypeStopped = "stopped" // the partition stopped; Stopped set
)

// MaxMessage is the largest record either side accepts.
const MaxMessage = 64 << 10

// maxFDs is the most descriptors a record may carry.
const maxFDs = 2

// Message is one record.
type Message struct {
	Type    string   `json:"type"`
	Seq     uint64   `json:"seq,omitempty"`
	Error   string   `json:"error,omitempty"`
	Start   *Start   `json:"start,omitempty"`
	Stopped *Stopped `json:"stopped,omitempty"`
	Stats   *Stats   `json:"stats,omitempty"`
	// Platform names the platform a started partition runs on (the reply
	// to a start request).
	Platform string `json:"platform,omitempty"`
}

// Start describes the partition the worker is to run. Guest memory is the
// memfd that comes with the message, exactly MemoryBytes long.
type Start struct {
	Name        string   `json:"name"`
	ID          string   `json:"id"`
	Generation  int      `json:"generation"`
	Firmware    string   `json:"firmware,omitempty"` // Generation 1
	Program     string   `json:"program,omitempty"`  // Generation 2: a static executable
	Disks       []string `json:"disks,omitempty"`
	MemoryBytes uint64   `json:"memory_bytes"`
	Processors  int      `json:"processors"`
	// VMBus says a second descriptor comes with the message: the guest
	// end of the partition's VMBus transport socket (package
	// vmbus/xproc), whose host end the root's VMBus server holds.
	// Generation 2 only.
	VMBus bool `json:"vmbus,omitempty"`
}

// Stopped says why a partition stopped.
type Stopped struct {
	PowerOff bool   `json:"power_off"`       // the guest powered itself off
	Reset    bool   `json:"reset,omitempty"` // the guest reset the machine: start it again
	Reason   string `json:"reason"`          // one line
	FlushErr string `json:"flush_error,omitempty"`
}

// Stats are a worker's counters.
type Stats struct {
	Exits      map[string]uint64 `json:"exits"` // vCPU exits by reason
	UnmappedIO uint64            `json:"unmapped_io"`
	Paused     bool              `json:"paused"`
	// Unserved counts a Generation 2 program's system calls that got
	// ENOSYS, by system call number (decimal).
	Unserved    map[string]uint64 `json:"unserved,omitempty"`
	MemoryBytes uint64            `json:"memory_bytes"`
}

// Validate checks that a message is well formed for its type and carries
// the number of descriptors that type takes.
func (m *Message) Validate(nfds int) error {
	want := 0
	switch m.Type {
	case TypeStart:
		if m.Start == nil {
			return errors.New("control: start without a partition")
		}
		want = 1
		if m.Start.VMBus {
			if m.Start.Generation != 2 {
				return errors.New("control: a VMBus socket for a partition that is not Generation 2")
			}
			want = 2
		}
	case TypePause, TypeResume, TypeTurnOff, TypePowerButton, TypeStats, TypeReply:
	case TypeStopped:
		if m.Stopped == nil {
			return errors.New("control: stopped without a reason")
		}
	default:
		return fmt.Errorf("control: unknown message type %q", m.Type)
	}
	if nfds != want {
		return fmt.Errorf("control: %s carries %d descriptors, want %d", m.Type, nfds, want)
	}
	return nil
}

// Conn is one end of a control socket. Send and Recv may run concurrently
// with each other, not with themselves.
type Conn struct {
	c   *net.UnixConn
	buf []byte
	oob []byte
}

// Pair makes a connected socket pair: the root's Conn, and the worker's end
// as a file to hand to the worker process (the caller closes it once the
// worker has it).
func Pair() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("control: socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "control-root")
	theirs := os.NewFile(uintptr(fds[1]), "control-worker")
	c, err := FromFile(mine)
	mine.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return c, theirs, nil
}

// FromFile wraps a SOCK_SEQPACKET socket. The Conn holds its own duplicate
// of the descriptor; f stays the caller's.
func FromFile(f *os.File) (*Conn, error) {
	typ, err := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("control: %s is not a socket: %w", f.Name(), err)
	}
	if typ != unix.SOCK_SEQPACKET {
		return nil, fmt.Errorf("control: %s is socket type %d, want SOCK_SEQPACKET", f.Name(), typ)
	}
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("control: %s: %w", f.Name(), err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("control: %s is not a Unix socket", f.Name())
	}
	return &Conn{c: uc, buf: make([]byte, MaxMessage+1), oob: make([]byte, unix.CmsgSpace(4*(maxFDs+4)))}, nil
}

// Send writes one message with its descriptors.
func (c *Conn) Send(m *Message, files ...*os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("control: %s message is %d bytes, limit %d", m.Type, len(b), MaxMessage)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.c.WriteMsgUnix(b, oob, nil)
	if err != nil {
		return fmt.Errorf("control: send %s: %w", m.Type, err)
	}
	return nil
}

// ErrClosed: the peer closed its end.
var ErrClosed = errors.New("control: peer closed the socket")

// Recv reads one message and the files that came with it (close-on-exec;
// the caller owns them). A malformed record is an error; its descriptors
// are closed.
func (c *Conn) Recv() (*Message, []*os.File, error) {
	n, oobn, flags, _, err := c.c.ReadMsgUnix(c.buf, c.oob)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
			return nil, nil, ErrClosed
		}
		return nil, nil, fmt.Errorf("control: receive: %w", err)
	}
	var fds []int
	if oobn > 0 {
		fds = rights(c.oob[:oobn])
	}
	fail := func(err error) (*Message, []*os.File, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, nil, err
	}
	if n == 0 && oobn == 0 {
		return fail(ErrClosed)
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return fail(errors.New("control: record carried too many descriptors"))
	}
	if n > MaxMessage || flags&unix.MSG_TRUNC != 0 {
		return fail(fmt.Errorf("control: record longer than %d bytes", MaxMessage))
	}
	m, err := Decode(c.buf[:n])
	if err != nil {
		return fail(err)
	}
	if err := m.Validate(len(fds)); err != nil {
		return fail(err)
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("control-fd-%d", i))
	}
	return m, files, nil
}

// Decode parses one record strictly: one JSON object, known fields only.
func Decode(b []byte) (*Message, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var m Message
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("control: bad record: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("control: trailing data after the record")
	}
	return &m, nil
}

// Close closes the socket; a Recv blocked on it returns.
func (c *Conn) Close() error { return c.c.Close() }

// rights extracts the descriptors of the SCM_RIGHTS messages in oob.
func rights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if f, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

// SparePlaceholder starts the --partition value of a worker the root
// starts before it has a partition for it (a spare); the root pads it to
// MaxNameLen bytes, room for the name written over it later.
const (
	SparePlaceholder = "(spare)"
	MaxNameLen       = 64 // the root's limit on partition names
)

// SpareLabel is the padded --partition value of a spare worker.
func SpareLabel() string {
	return SparePlaceholder + strings.Repeat(" ", MaxNameLen-len(SparePlaceholder))
}

// IsSpare reports whether a --partition value is a spare's placeholder.
func IsSpare(label string) bool { return strings.HasPrefix(label, SparePlaceholder) }
