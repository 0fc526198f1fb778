package gen2

import (
	"encoding/binary"
	"time"
)

// The descriptors a program can have besides the console: eventfds and
// epoll instances, which the Go runtime's network poller uses to sleep
// until its next timer and to be woken early. Nothing else exists: no
// files, no sockets (devices come over VMBus).

type fileKind int

const (
	kindEventfd fileKind = iota + 1
	kindEpoll
)

type file struct {
	kind    fileKind
	count   uint64               // eventfd counter
	watched map[int64]epollWatch // epoll: registrations by descriptor
}

type epollWatch struct {
	events uint32
	data   uint64
}

// maxFiles bounds the descriptors a program may hold.
const maxFiles = 64

const (
	epollIn     = 0x1
	epollCtlAdd = 1
	epollCtlDel = 2
	epollCtlMod = 3
)

// More system calls.
const (
	sysClose        = 3
	sysEpollCreate  = 213
	sysEpollWait    = 232
	sysEpollCtl     = 233
	sysEpollPwait   = 281
	sysEventfd      = 284
	sysEventfd2     = 290
	sysEpollCreate1 = 291
)

// newFile gives f the lowest free descriptor from 3; the caller holds p.mu.
func (p *Partition) newFile(f *file) int64 {
	if len(p.files) >= maxFiles {
		return -eMFILE
	}
	for fd := int64(3); ; fd++ {
		if p.files[fd] == nil {
			p.files[fd] = f
			return fd
		}
	}
}

// changed wakes epoll waiters; the caller holds p.mu.
func (p *Partition) changed() {
	close(p.fileChange)
	p.fileChange = make(chan struct{})
}

// eventfdRead and eventfdWrite serve read and write on an eventfd (always
// non-blocking here).
func (p *Partition) eventfdRead(f *file, buf, n uint64) int64 {
	if n < 8 {
		return -eINVAL
	}
	if f.count == 0 {
		return -eAGAIN
	}
	if !p.as.copyOut(buf, binary.LittleEndian.AppendUint64(nil, f.count)) {
		return -eFAULT
	}
	f.count = 0
	return 8
}

func (p *Partition) eventfdWrite(f *file, buf, n uint64) int64 {
	if n < 8 {
		return -eINVAL
	}
	b, ok := p.as.copyIn(buf, 8)
	if !ok {
		return -eFAULT
	}
	v := binary.LittleEndian.Uint64(b)
	if v == ^uint64(0) || f.count+v < f.count {
		return -eINVAL
	}
	f.count += v
	p.changed()
	return 8
}

// epollCtl adds, changes or removes a registration.
func (p *Partition) epollCtl(epfd, op, fd, event uint64) int64 {
	ep := p.files[int64(epfd)]
	target := p.files[int64(fd)]
	if ep == nil || ep.kind != kindEpoll || target == nil || int64(fd) == int64(epfd) {
		return -eBADF
	}
	switch op {
	case epollCtlDel:
		delete(ep.watched, int64(fd))
		return 0
	case epollCtlAdd, epollCtlMod:
		b, ok := p.as.copyIn(event, 12) // struct epoll_event is packed on x86-64
		if !ok {
			return -eFAULT
		}
		if _, there := ep.watched[int64(fd)]; (op == epollCtlAdd) == there {
			if there {
				return -eEXIST
			}
			return -eNOENT
		}
		ep.watched[int64(fd)] = epollWatch{events: binary.LittleEndian.Uint32(b), data: binary.LittleEndian.Uint64(b[4:])}
		return 0
	}
	return -eINVAL
}

// epollWait reports ready registrations (an eventfd with a count is
// readable), waiting up to timeout milliseconds (-1: until one is) with
// p.mu released.
func (p *Partition) epollWait(epfd, events, max uint64, timeout int32) int64 {
	ep := p.files[int64(epfd)]
	if ep == nil || ep.kind != kindEpoll {
		return -eBADF
	}
	if max == 0 || max > 1024 {
		return -eINVAL
	}
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(min(time.Duration(timeout)*time.Millisecond, maxWait))
	}
	for {
		var out []byte
		n := uint64(0)
		for fd, w := range ep.watched {
			f := p.files[fd]
			if f == nil || f.kind != kindEventfd || f.count == 0 || w.events&epollIn == 0 || n == max {
				continue
			}
			out = binary.LittleEndian.AppendUint32(out, epollIn)
			out = binary.LittleEndian.AppendUint64(out, w.data)
			n++
		}
		if n > 0 {
			if !p.as.copyOut(events, out) {
				return -eFAULT
			}
			return int64(n)
		}
		if timeout == 0 {
			return 0
		}
		change := p.fileChange
		p.mu.Unlock()
		wait := forever
		if timeout >= 0 {
			wait = time.Until(deadline)
			if wait < 0 {
				wait = 0
			}
		}
		switch waitFor(wait, change, p.end) {
		case -1:
			p.mu.Lock()
			return 0
		case 1:
			p.mu.Lock()
			return -eINTR
		}
		p.mu.Lock()
	}
}
