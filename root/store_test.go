package root

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/vmbus/host"
)

func TestStoreRoundTripAndRecovery(t *testing.T) {
	dir := t.TempDir()
	st, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := &Definition{Version: definitionVersion, ID: newGUID(), Name: "a", Generation: 1, MemoryMB: 64, Processors: 1,
		Created: time.Now().UTC(), ProcID: newGUID(), MemID: newGUID()}
	if err := st.save(d); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(st.path(d.ID)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("definition file: %v %v", fi, err)
	}
	// Leftovers of a crash: a temp file and a file that does not parse.
	tmp := filepath.Join(st.dir, "."+d.ID+".json.123.tmp")
	os.WriteFile(tmp, []byte(`{"version":1,`), 0o600)
	bad := filepath.Join(st.dir, newGUID()+".json")
	os.WriteFile(bad, []byte(`{"version":1,"id":"x"`), 0o600)
	wrongName := newGUID()
	os.WriteFile(filepath.Join(st.dir, wrongName+".json"), []byte(`{"version":1,"id":"`+d.ID+`","name":"b"}`), 0o600)

	defs, problems := st.load()
	if len(defs) != 1 || defs[0].ID != d.ID || defs[0].Name != "a" {
		t.Fatalf("loaded %+v", defs)
	}
	if len(problems) != 2 {
		t.Fatalf("problems %v, want 2", problems)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatal("temp file not removed")
	}
	if _, err := os.Stat(bad + ".bad"); err != nil {
		t.Fatal("unparsable file not set aside")
	}
	if err := st.remove(d.ID); err != nil {
		t.Fatal(err)
	}
	if defs, _ := st.load(); len(defs) != 0 {
		t.Fatalf("after remove: %v", defs)
	}
}

func TestTokenMadeOnceWithMode0600(t *testing.T) {
	dir := t.TempDir()
	tok, err := loadToken(dir)
	if err != nil || len(tok) != 64 {
		t.Fatalf("token %q, %v", tok, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "api-token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v, %v", fi, err)
	}
	again, err := loadToken(dir)
	if err != nil || again != tok {
		t.Fatalf("second load %q, %v", again, err)
	}
	os.WriteFile(filepath.Join(dir, "api-token"), []byte("short\n"), 0o600)
	if _, err := loadToken(dir); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("short token accepted: %v", err)
	}
}

func TestGUIDs(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		g := newGUID()
		if !isGUID(g) || seen[g] || g[14] != '4' {
			t.Fatalf("bad or repeated GUID %q", g)
		}
		seen[g] = true
	}
	for _, s := range []string{"", "x", "16D1EF0B-91FC-4CFE-89B7-736F3D4C366", "16D1EF0B_91FC-4CFE-89B7-736F3D4C3661", "16D1EF0B-91FC-4CFE-89B7-736F3D4C366G"} {
		if isGUID(s) {
			t.Errorf("%q taken for a GUID", s)
		}
	}
}

// TestVMBusPollSetting: Config.VMBusPoll's zero is the default, a negative
// value turns polling off, anything else is taken as is.
func TestVMBusPollSetting(t *testing.T) {
	for _, c := range []struct{ set, want time.Duration }{
		{0, host.DefaultPoll}, {-1, 0}, {5 * time.Microsecond, 5 * time.Microsecond},
	} {
		s := &Service{cfg: Config{VMBusPoll: c.set}}
		if got := s.vmbusPoll(); got != c.want {
			t.Errorf("VMBusPoll %v: devices poll %v, want %v", c.set, got, c.want)
		}
	}
}
