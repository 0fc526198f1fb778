package root

import (
	"context"
	"sync"
)

// consoleBufferSize is how much COM1 output the root keeps per partition.
const consoleBufferSize = 1 << 20

// Console is a partition's COM1 output as the root keeps it: the last
// consoleBufferSize bytes, addressed by absolute offsets (cursors) that
// only grow, across runs of the partition. Readers wait for more.
type Console struct {
	mu      sync.Mutex
	buf     []byte // ring; byte at offset o is buf[o%len(buf)]
	end     uint64 // offset just past the newest byte
	changed chan struct{}
	live    bool // a worker is writing
}

func newConsole() *Console {
	return &Console{buf: make([]byte, consoleBufferSize), changed: make(chan struct{})}
}

// Write appends output. It never fails: older bytes are overwritten.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	if len(p) > len(c.buf) {
		c.end += uint64(len(p) - len(c.buf))
		p = p[len(p)-len(c.buf):]
	}
	for len(p) > 0 {
		i := int(c.end % uint64(len(c.buf)))
		k := copy(c.buf[i:], p)
		p = p[k:]
		c.end += uint64(k)
	}
	c.wakeLocked()
	return n, nil
}

func (c *Console) wakeLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// setLive marks whether a worker is attached; followers of a console that
// is not live stop at its end.
func (c *Console) setLive(live bool) {
	c.mu.Lock()
	c.live = live
	c.wakeLocked()
	c.mu.Unlock()
}

// End is the offset just past the newest byte.
func (c *Console) End() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.end
}

// Read returns up to max bytes from cursor (or from the oldest byte kept,
// if cursor is older), the offset of the first byte returned, and the
// cursor to read from next.
func (c *Console) Read(cursor uint64, max int) (data []byte, start, next uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readLocked(cursor, max)
}

func (c *Console) readLocked(cursor uint64, max int) ([]byte, uint64, uint64) {
	oldest := uint64(0)
	if c.end > uint64(len(c.buf)) {
		oldest = c.end - uint64(len(c.buf))
	}
	if cursor < oldest {
		cursor = oldest
	}
	if cursor >= c.end {
		return nil, c.end, c.end
	}
	n := c.end - cursor
	if n > uint64(max) {
		n = uint64(max)
	}
	out := make([]byte, n)
	for k := 0; k < len(out); {
		i := int((cursor + uint64(k)) % uint64(len(c.buf)))
		k += copy(out[k:], c.buf[i:])
	}
	return out, cursor, cursor + n
}

// Follow reads like Read but waits until there is something past cursor.
// It returns no data (and ok false) once the console is not live and
// cursor is at its end, or when ctx ends.
func (c *Console) Follow(ctx context.Context, cursor uint64, max int) (data []byte, start, next uint64, ok bool) {
	for {
		c.mu.Lock()
		cursor = min(cursor, c.end) // a cursor past the end waits at the end
		c.mu.Unlock()
		c.mu.Lock()
		data, start, next = c.readLocked(cursor, max)
		live, changed := c.live, c.changed
		c.mu.Unlock()
		if len(data) > 0 {
			return data, start, next, true
		}
		if !live {
			return nil, start, next, false
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, start, next, false
		}
	}
}
