package root

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Definition is what the root keeps of a partition across restarts: one
// JSON file per partition, DIR/partitions/<ID>.json.
type Definition struct {
	Version    int       `json:"version"`
	ID         string    `json:"id"` // GUID, the WMI Name
	Name       string    `json:"name"`
	Generation int       `json:"generation"`
	MemoryMB   uint64    `json:"memory_mb"`
	Processors int       `json:"processors"`
	Firmware   string    `json:"firmware,omitempty"` // Gen1 ROM
	Guest      string    `json:"guest,omitempty"`    // Gen2 ELF
	Disks      []DiskDef `json:"disks,omitempty"`
	NICs       []NICDef  `json:"nics,omitempty"`
	// KVP are the host's key-value pairs for a Generation 2 guest
	// (Msvm_KvpExchangeComponent.HostExchangeItems).
	KVP     map[string]string `json:"kvp,omitempty"`
	Created time.Time         `json:"created"`
	ProcID  string            `json:"processor_id"` // InstanceID suffixes of the fixed resources
	MemID   string            `json:"memory_id"`
}

// DiskDef is one virtual disk: a raw image on the host.
type DiskDef struct {
	ID   string `json:"id"`
	Path string `json:"path"`
}

// NICDef is one network adapter connected to a virtual switch.
type NICDef struct {
	ID     string `json:"id"`
	Switch string `json:"switch"`
	MAC    string `json:"mac,omitempty"`
}

const definitionVersion = 1

// newGUID returns a random (version 4) GUID in its usual text form.
func newGUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	b[6] = b[6]&0x0F | 0x40
	b[8] = b[8]&0x3F | 0x80
	h := hex.EncodeToString(b[:])
	return strings.ToUpper(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
}

// isGUID reports whether s is a GUID in the form newGUID makes.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// store persists definitions crash-safely: each is written to a temporary
// file in the same directory, fsynced, renamed over the old one, and the
// directory fsynced, so a reader (or a restart after kill -9) sees the
// old file or the new one, never a torn one.
type store struct {
	dir string
}

func openStore(stateDir string) (*store, error) {
	dir := filepath.Join(stateDir, "partitions")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return &store{dir: dir}, nil
}

func (s *store) path(id string) string { return filepath.Join(s.dir, id+".json") }

// save writes d.
func (s *store) save(d *Definition) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.path(d.ID), append(b, '\n'), 0o600)
}

// remove deletes d's file durably.
func (s *store) remove(id string) error {
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(s.dir)
}

// load reads every definition. Leftover temporary files (a write that a
// crash interrupted before its rename) are removed; a file that does not
// parse is reported and set aside as .bad, never deleted.
func (s *store) load() (defs []*Definition, problems []error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, []error{err}
	}
	for _, e := range ents {
		name := e.Name()
		full := filepath.Join(s.dir, name)
		switch {
		case strings.HasSuffix(name, ".tmp"):
			os.Remove(full)
		case strings.HasSuffix(name, ".json"):
			d, err := readDefinition(full)
			if err != nil {
				problems = append(problems, fmt.Errorf("%s: %w (moved aside as .bad)", full, err))
				os.Rename(full, full+".bad")
				continue
			}
			defs = append(defs, d)
		}
	}
	return defs, problems
}

func readDefinition(path string) (*Definition, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Definition
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	if d.Version != definitionVersion {
		return nil, fmt.Errorf("definition version %d, want %d", d.Version, definitionVersion)
	}
	if !isGUID(d.ID) || filepath.Base(path) != d.ID+".json" {
		return nil, fmt.Errorf("id %q does not match the file name", d.ID)
	}
	if err := validName(d.Name); err != nil {
		return nil, err
	}
	return &d, nil
}

// writeFileAtomic replaces path with data: temp file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// loadToken reads DIR/api-token, making it (32 random bytes, hex, mode
// 0600) at first start.
func loadToken(stateDir string) (string, error) {
	path := filepath.Join(stateDir, "api-token")
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 32 {
			return "", fmt.Errorf("%s: token too short (%d characters); remove the file to make a new one", path, len(tok))
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw[:])
	if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return tok, nil
}
