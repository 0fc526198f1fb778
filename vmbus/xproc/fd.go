package xproc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// errHungUp: the peer closed its end of the socket.
var errHungUp = errors.New("xproc: peer closed the socket")

// seqpacketConn wraps a SOCK_SEQPACKET socket for the runtime poller. The
// returned conn holds its own duplicate of f's descriptor; f stays the
// caller's.
func seqpacketConn(f *os.File) (*net.UnixConn, syscall.RawConn, error) {
	typ, err := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, nil, fmt.Errorf("xproc: %s is not a socket: %w", f.Name(), err)
	}
	if typ != unix.SOCK_SEQPACKET {
		return nil, nil, fmt.Errorf("xproc: %s is socket type %d, want SOCK_SEQPACKET", f.Name(), typ)
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, nil, fmt.Errorf("xproc: socket %s: %w", f.Name(), err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, nil, fmt.Errorf("xproc: %s is not a Unix socket", f.Name())
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, nil, err
	}
	return uc, rc, nil
}

// recvFrame reads one record into buf, with room in oob for the control
// message of (at least) one fd, blocking through the runtime poller. It
// returns the record's length, the fds that came with it (close-on-exec;
// the caller owns them) and the recvmsg flags (MSG_TRUNC, MSG_CTRUNC). A
// read of 0 bytes with no fds is errHungUp if the peer has shut down, and
// otherwise a zero-length record, returned as n == 0.
func recvFrame(rc syscall.RawConn, buf, oob []byte) (n int, fds []int, flags int, err error) {
	var oobn int
	var rerr error
	hup := false
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
			// ECONNRESET: the peer closed with frames of ours unread. The
			// kernel reports it once, ahead of frames still queued for
			// us; read on to those, then to the end of the stream.
			if rerr != unix.EINTR && rerr != unix.ECONNRESET {
				break
			}
		}
		if rerr == unix.EAGAIN {
			return false // wait for the poller
		}
		if rerr == nil && n == 0 && oobn == 0 {
			hup = hungUp(int(fd))
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	if oobn > 0 {
		fds = rights(oob[:oobn])
	}
	if err != nil {
		closeAll(fds)
		return 0, nil, 0, err
	}
	if hup {
		return 0, nil, 0, errHungUp
	}
	return n, fds, flags, nil
}

// hungUp reports whether the peer of socket fd has shut down its sending
// side, which is what tells end of stream from an empty record.
func hungUp(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	for {
		_, err := unix.Poll(p, 0)
		if err != unix.EINTR {
			return err != nil || p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
		}
	}
}

// rights extracts the fds of the SCM_RIGHTS control messages in oob.
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

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// newEventfd makes a close-on-exec, nonblocking eventfd.
func newEventfd() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("eventfd: %w", err)
	}
	return fd, nil
}

// isEventfd reports whether fd is an eventfd (as opposed to, say, a pipe
// a hostile guest hoped the host would block on).
func isEventfd(fd int) bool {
	var buf [64]byte
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf[:])
	return err == nil && string(buf[:n]) == "anon_inode:[eventfd]"
}

// writeEvent adds 1 to an eventfd. EAGAIN means the counter is already at
// its maximum, so the reader has plenty to wake for: it is not an error.
func writeEvent(fd int) error {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	for {
		_, err := unix.Write(fd, one[:])
		switch err {
		case unix.EINTR:
			continue
		case nil, unix.EAGAIN:
			return nil
		default:
			return fmt.Errorf("write eventfd: %w", err)
		}
	}
}
