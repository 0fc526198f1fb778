package wmiapi

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// systemCache keeps the JSON encoding of each partition as last listed,
// so that a list re-encodes only the partitions that changed since (a
// running partition's OnTimeInMilliseconds changes on every call; an idle
// one's nothing). Encoding dominates the cost of a list.
type systemCache struct {
	mu sync.Mutex
	m  map[string]cachedSystem // by Name
}

type cachedSystem struct {
	cs   ComputerSystem
	json []byte
}

func sameSystem(a, b *ComputerSystem) bool {
	return a.ElementName == b.ElementName && a.Name == b.Name && a.EnabledState == b.EnabledState &&
		a.RequestedState == b.RequestedState && a.HealthState == b.HealthState &&
		slices.Equal(a.OperationalStatus, b.OperationalStatus) && slices.Equal(a.StatusDescriptions, b.StatusDescriptions) &&
		a.OnTimeInMilliseconds == b.OnTimeInMilliseconds && a.ProcessID == b.ProcessID &&
		a.TimeOfLastStateChange.Equal(b.TimeOfLastStateChange) && a.InstallDate.Equal(b.InstallDate) &&
		a.Generation == b.Generation && a.MemoryMB == b.MemoryMB && a.Processors == b.Processors &&
		a.LastStopReason == b.LastStopReason && a.Platform == b.Platform
}

// encodeList returns the JSON encodings of list's elements, reusing
// cached ones. The slices are
// never modified once made, so the caller may use them after the lock is
// released.
func (c *systemCache) encodeList(list []ComputerSystem) ([][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedSystem{}
	}
	parts := make([][]byte, len(list))
	for i := range list {
		e, ok := c.m[list[i].Name]
		if !ok || !sameSystem(&e.cs, &list[i]) {
			b, err := json.Marshal(&list[i])
			if err != nil {
				return nil, err
			}
			e = cachedSystem{cs: list[i], json: b}
			c.m[list[i].Name] = e
		}
		parts[i] = e.json
	}
	if len(c.m) > len(list) {
		// Forget partitions that are gone.
		keep := make(map[string]bool, len(list))
		for i := range list {
			keep[list[i].Name] = true
		}
		for k := range c.m {
			if !keep[k] {
				delete(c.m, k)
			}
		}
	}
	return parts, nil
}

// listBufs recycles list response buffers.
var listBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeList writes the JSON array of parts in one write: on these
// machines a system call costs more than copying the whole list.
func writeList(w http.ResponseWriter, parts [][]byte) error {
	bp := listBufs.Get().(*[]byte)
	defer listBufs.Put(bp)
	b := append((*bp)[:0], '[')
	for i, p := range parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p...)
	}
	b = append(b, ']', '\n')
	*bp = b
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(b)
	return err
}
