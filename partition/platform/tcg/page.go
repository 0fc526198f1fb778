package tcg

import "golang.org/x/sys/unix"

// hostPage is an anonymous page of host memory, outside Go's heap, that
// the engine can map.
type hostPage struct{ b []byte }

func anonPage() (hostPage, error) {
	b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	return hostPage{b}, err
}

func (p hostPage) free() { unix.Munmap(p.b) }
