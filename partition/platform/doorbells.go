package platform

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Doorbells is a platform's table of doorbells: which eventfd a 32-bit
// write of a datamatch value to a port signals. The caller of Add keeps
// each eventfd open until after Remove. Safe for concurrent use.
type Doorbells struct {
	mu sync.Mutex
	m  map[doorbellKey]int // guarded by mu
}

type doorbellKey struct {
	port      uint16
	datamatch uint32
}

// Add records fd for (port, datamatch); it refuses a second one.
func (d *Doorbells) Add(port uint16, datamatch uint32, fd int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := doorbellKey{port, datamatch}
	if _, ok := d.m[k]; ok {
		return fmt.Errorf("a doorbell for %#x on port %#x exists", datamatch, port)
	}
	if d.m == nil {
		d.m = map[doorbellKey]int{}
	}
	d.m[k] = fd
	return nil
}

// Remove forgets the doorbell and returns its eventfd.
func (d *Doorbells) Remove(port uint16, datamatch uint32) (fd int, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := doorbellKey{port, datamatch}
	fd, ok = d.m[k]
	delete(d.m, k)
	return fd, ok
}

// Ring signals the doorbell's eventfd; false if there is none.
func (d *Doorbells) Ring(port uint16, datamatch uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	fd, ok := d.m[doorbellKey{port, datamatch}]
	if ok {
		// Under mu: the caller of Remove closes fd only after it.
		unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
	return ok
}
