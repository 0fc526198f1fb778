package gen2

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
)

func TestELFHash(t *testing.T) {
	// The hash the Go runtime and glibc look LINUX_2.6 up by.
	if h := elfHash("LINUX_2.6"); h != 0x3ae75f6 {
		t.Errorf("elfHash(LINUX_2.6) = %#x", h)
	}
}

// TestVDSOImage: binutils' readelf reads the image as Linux's vDSO is
// read: a dynamic symbol __vdso_clock_gettime of version LINUX_2.6.
func TestVDSOImage(t *testing.T) {
	readelf := testenv.RequireTool(t, "readelf")
	f := filepath.Join(t.TempDir(), "vdso.so")
	if err := os.WriteFile(f, vdsoImage(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(readelf, "-D", "-s", "-d", "-W", f).CombinedOutput()
	if err != nil {
		t.Fatalf("readelf: %v\n%s", err, out)
	}
	for _, want := range []string{"FUNC    GLOBAL DEFAULT    1 __vdso_clock_gettime@@LINUX_2.6", "(VERDEF)", "(HASH)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("readelf lacks %q:\n%s", want, out)
		}
	}
}

// TestVDSOClock: the vDSO's monotonic and real-time clocks fall between
// two system calls that read the host's, and an unsupported clock falls
// back to the system call.
func TestVDSOClock(t *testing.T) {
	exit, out, p := run(t, program(t, "vdso"))
	if !exit.Clean || len(out) != 104 {
		t.Fatalf("exit %+v, %d bytes", exit, len(out))
	}
	ts := func(i int) time.Duration {
		b := []byte(out[16*i:])
		return time.Duration(binary.LittleEndian.Uint64(b))*time.Second + time.Duration(binary.LittleEndian.Uint64(b[8:]))
	}
	for clock, name := range []string{"realtime", "monotonic"} {
		before, vdso, after := ts(3*clock), ts(3*clock+1), ts(3*clock+2)
		// A syscall takes ~50 µs here; allow the kHz frequency's drift and some slack.
		if vdso < before-time.Millisecond || vdso > after+time.Millisecond {
			t.Errorf("%s: vDSO %v not within [%v, %v]", name, vdso, before, after)
		}
		t.Logf("%s: syscall %v, vDSO +%v, syscall +%v", name, before, vdso-before, after-before)
	}
	if ret := int64(binary.LittleEndian.Uint64([]byte(out[96:]))); ret != -eINVAL {
		t.Errorf("clock 2 through the vDSO returned %d, want -EINVAL from the system call", ret)
	}
	if n := p.SyscallCounts()[sysClockGettime]; n != 5 {
		t.Errorf("%d clock_gettime system calls, want 5 (4 direct, 1 fallback)", n)
	}
}
