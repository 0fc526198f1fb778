package vmwp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/internal/testplatform"
	"github.com/partita-hv/partita/partition/control"
	"github.com/partita-hv/partita/vsp/disk"
)

// TestMain runs Main instead of the tests when the test binary is
// re-executed as a worker, with argv[0] "vmwp" as the root service does.
func TestMain(m *testing.M) {
	if os.Args[0] == "vmwp" {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// rom assembles ../testdata/name.S (the worker's test ROMs).
func rom(t *testing.T, name string) string {
	t.Helper()
	return testguest.AssembleToFile(t, testguest.WorkerROM(name), "0")
}

func requireKVM(t *testing.T) { testenv.RequireKVM(t) }

type syncBuffer = testenv.Buffer

// child is a worker process run from this test binary, seen from the
// root's side.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	conn   *control.Conn
	stdin  io.WriteCloser
	stdout syncBuffer
	stderr syncBuffer
	seq    uint64
	recv   chan received
	exited chan struct{} // closed when the process has been reaped
	err    error         // its exit status, once exited is closed
}

type received struct {
	m   *control.Message
	err error
}

// raceQuickExit is the environment for a child, without the race
// detector's second of sleep at exit.
func raceQuickExit() []string {
	return append(os.Environ(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
}

// spawn starts a worker process with the control socket as descriptor 3.
func spawn(t *testing.T, args ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	conn, theirs, err := control.Pair()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, conn: conn, recv: make(chan received, 16), exited: make(chan struct{})}
	c.cmd = &exec.Cmd{
		Path:       exe,
		Args:       append([]string{"vmwp", "--control-fd", "3"}, args...),
		ExtraFiles: []*os.File{theirs},
		Stdout:     &c.stdout,
		Stderr:     &c.stderr,
		Env:        raceQuickExit(),
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	err = c.cmd.Start()
	theirs.Close()
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	go func() {
		for {
			m, files, err := conn.Recv()
			for _, f := range files {
				f.Close()
			}
			c.recv <- received{m, err}
			if errors.Is(err, control.ErrClosed) {
				return
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		c.stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.exited
			t.Errorf("worker still running 10 s after the test closed its control socket")
		}
		if t.Failed() {
			t.Logf("worker stderr:\n%s", c.stderr.String())
		}
	})
	return c
}

// next returns the next record from the worker.
func (c *child) next() *control.Message {
	c.t.Helper()
	select {
	case r := <-c.recv:
		if r.err != nil {
			c.t.Fatalf("control socket: %v; worker stderr:\n%s", r.err, c.stderr.String())
		}
		return r.m
	case <-time.After(20 * time.Second):
		c.t.Fatalf("no record from the worker in 20 s; stderr:\n%s", c.stderr.String())
		return nil
	}
}

// request sends a request and returns its reply.
func (c *child) request(m *control.Message, files ...*os.File) *control.Message {
	c.t.Helper()
	c.seq++
	m.Seq = c.seq
	if err := c.conn.Send(m, files...); err != nil {
		c.t.Fatal(err)
	}
	r := c.next()
	if r.Type != control.TypeReply || r.Seq != m.Seq {
		c.t.Fatalf("%s request %d answered with %+v", m.Type, m.Seq, r)
	}
	return r
}

// start hands the worker a partition on a fresh memfd of size bytes.
func (c *child) start(st control.Start, size uint64) *control.Message {
	c.t.Helper()
	mem, err := guestmem.New(c.t.Name(), size)
	if err != nil {
		c.t.Fatal(err)
	}
	defer mem.Close() // the worker has its own copy once Send returns
	return c.request(&control.Message{Type: control.TypeStart, Start: &st}, mem.File())
}

// wait returns the process's exit code once it exits.
func (c *child) wait() int {
	c.t.Helper()
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		c.t.Fatalf("worker did not exit in 20 s; stderr:\n%s", c.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode()
	}
	if c.err != nil {
		c.t.Fatal(c.err)
	}
	return 0
}

// waitStdout waits until the worker's standard output is want.
func (c *child) waitStdout(want string) {
	c.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if c.stdout.String() == want {
			return
		}
	}
	c.t.Fatalf("stdout %q, want %q; stderr:\n%s", c.stdout.String(), want, c.stderr.String())
}

// checkJSONLogs checks that every line of standard error is a JSON
// object, and returns them.
func (c *child) checkJSONLogs() []map[string]any {
	c.t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(c.stderr.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			c.t.Errorf("stderr line is not JSON: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}

// TestControlledHello runs the hello ROM (COM1 output, then power-off)
// on a disk: the start reply, COM1 on standard output, the stopped record
// with PowerOff after the flush, exit 0.
func TestControlledHello(t *testing.T) {
	requireKVM(t)
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := disk.CreateRaw(img, 1<<20); err != nil {
		t.Fatal(err)
	}
	c := spawn(t, "--partition", "hello")
	if r := c.start(control.Start{Name: "hello", ID: "id-1", Generation: 1, Firmware: rom(t, "hello"),
		Disks: []string{img}, MemoryBytes: 16 << 20, Processors: 2}, 16<<20); r.Error != "" {
		t.Fatalf("start: %s", r.Error)
	}
	m := c.next()
	if m.Type != control.TypeStopped || !m.Stopped.PowerOff || m.Stopped.Reason != "guest powered off" || m.Stopped.FlushErr != "" {
		t.Fatalf("got %+v (stopped %+v), want a clean power-off", m, m.Stopped)
	}
	if code := c.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if got := c.stdout.String(); got != "Partita tiny ROM\r\n" {
		t.Errorf("stdout %q", got)
	}
	if len(c.checkJSONLogs()) == 0 {
		t.Error("no log lines")
	}

}

// TestControlled drives the echo ROM through every request: stats with
// exit counts, pause (COM1 input waits, no echo), resume (the echo comes),
// a power button nobody listens to, records the worker must ignore, and
// finally input that makes the guest power off.
func TestControlled(t *testing.T) {
	requireKVM(t)
	const name = "controlled-partition-name"
	c := spawn(t, "--partition", name)
	if r := c.start(control.Start{Name: name, ID: "id-2", Generation: 1, Firmware: rom(t, "echo"),
		MemoryBytes: 16 << 20, Processors: 1}, 16<<20); r.Error != "" {
		t.Fatalf("start: %s", r.Error)
	}
	c.waitStdout(">")

	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.cmd.Process.Pid), "comm"))
	if err != nil || string(comm) != "vmwp:controlled\n" {
		t.Errorf("process name %q (%v), want \"vmwp:controlled\"", comm, err)
	}

	st := c.request(&control.Message{Type: control.TypeStats}).Stats
	if st == nil || st.Exits["io"] == 0 || st.MemoryBytes != 16<<20 || st.Paused {
		t.Fatalf("stats %+v", st)
	}

	if r := c.request(&control.Message{Type: control.TypePause}); r.Error != "" {
		t.Fatalf("pause: %s", r.Error)
	}
	st = c.request(&control.Message{Type: control.TypeStats}).Stats
	if !st.Paused {
		t.Errorf("stats while paused: %+v", st)
	}
	io1 := st.Exits["io"]
	if _, err := io.WriteString(c.stdin, "ab"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := c.stdout.String(); got != ">" {
		t.Fatalf("a paused guest echoed: stdout %q", got)
	}
	if st = c.request(&control.Message{Type: control.TypeStats}).Stats; st.Exits["io"] != io1 {
		t.Errorf("I/O exits went from %d to %d while paused", io1, st.Exits["io"])
	}
	if r := c.request(&control.Message{Type: control.TypeResume}); r.Error != "" {
		t.Fatalf("resume: %s", r.Error)
	}
	c.waitStdout(">ab")
	if st = c.request(&control.Message{Type: control.TypeStats}).Stats; st.Paused || st.Exits["io"] <= io1 {
		t.Errorf("stats after resume: %+v", st)
	}

	if r := c.request(&control.Message{Type: control.TypePowerButton}); r.Error != "guest does not listen for the ACPI power button" {
		t.Errorf("power button: %q", r.Error)
	}

	// Records to ignore (an unknown type, a reply, a descriptor where none
	// belongs) and a second start: the worker goes on serving.
	for _, m := range []*control.Message{{Type: "reboot", Seq: 100}, {Type: control.TypeReply, Seq: 101}} {
		if err := c.conn.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.conn.Send(&control.Message{Type: control.TypeStats, Seq: 102}, os.Stdin); err != nil {
		t.Fatal(err)
	}
	if r := c.start(control.Start{Name: name, Generation: 1, Firmware: "x", MemoryBytes: 16 << 20}, 16<<20); !strings.Contains(r.Error, "already started") {
		t.Errorf("second start: %q", r.Error)
	}
	if st = c.request(&control.Message{Type: control.TypeStats}).Stats; st == nil {
		t.Error("no stats after the ignored records")
	}

	if _, err := io.WriteString(c.stdin, "c."); err != nil {
		t.Fatal(err)
	}
	m := c.next()
	if m.Type != control.TypeStopped || !m.Stopped.PowerOff {
		t.Fatalf("got %+v (stopped %+v), want a power-off", m, m.Stopped)
	}
	if code := c.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if got := c.stdout.String(); got != ">abc" {
		t.Errorf("stdout %q", got)
	}
	ignored := 0
	for _, l := range c.checkJSONLogs() {
		if l["@message"] == "ignored a control record" {
			ignored++
		}
	}
	if ignored != 3 {
		t.Errorf("%d ignored records logged, want 3", ignored)
	}
}

// TestControlledTurnOff: turn-off stops the partition with its reason;
// the stop is reported and the worker exits 0. Requests after it get an
// error, not a hang.
func TestControlledTurnOff(t *testing.T) {
	requireKVM(t)
	c := spawn(t, "--partition", "off")
	if r := c.start(control.Start{Name: "off", Generation: 1, Firmware: rom(t, "echo"), MemoryBytes: 16 << 20}, 16<<20); r.Error != "" {
		t.Fatalf("start: %s", r.Error)
	}
	c.waitStdout(">")
	if r := c.request(&control.Message{Type: control.TypeTurnOff}); r.Error != "" {
		t.Fatalf("turn-off: %s", r.Error)
	}
	m := c.next()
	if m.Type != control.TypeStopped || m.Stopped.PowerOff || m.Stopped.Reason != "turned off" {
		t.Fatalf("got %+v (stopped %+v)", m, m.Stopped)
	}
	if code := c.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestControlledTripleFault: a guest crash is reported, and is no reason
// for a non-zero exit.
func TestControlledTripleFault(t *testing.T) {
	requireKVM(t)
	c := spawn(t)
	if r := c.start(control.Start{Name: "triple", Generation: 1, Firmware: rom(t, "triple"), MemoryBytes: 16 << 20}, 16<<20); r.Error != "" {
		t.Fatalf("start: %s", r.Error)
	}
	m := c.next()
	if m.Type != control.TypeStopped || m.Stopped.PowerOff || !strings.Contains(m.Stopped.Reason, "triple fault") {
		t.Fatalf("got %+v (stopped %+v)", m, m.Stopped)
	}
	if code := c.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestControlledRootGone: when the root's end of the control socket
// closes, the worker stops its partition, flushes and exits promptly.
func TestControlledRootGone(t *testing.T) {
	requireKVM(t)
	c := spawn(t, "--partition", "orphan")
	if r := c.start(control.Start{Name: "orphan", Generation: 1, Firmware: rom(t, "echo"), MemoryBytes: 16 << 20}, 16<<20); r.Error != "" {
		t.Fatalf("start: %s", r.Error)
	}
	c.waitStdout(">")
	start := time.Now()
	c.conn.Close()
	if code := c.wait(); code == 0 {
		t.Errorf("exit 0 without a root to report to")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("worker took %v to exit", d)
	}
	found := false
	for _, l := range c.checkJSONLogs() {
		if l["reason"] == "root service went away" {
			found = true
		}
	}
	if !found {
		t.Errorf("no log line with the reason; stderr:\n%s", c.stderr.String())
	}
}

// TestControlledRootGoneBeforeStart: a worker whose control socket closes
// before a start request (a spare the root dismisses, or a root that
// died) exits at once, cleanly: it had nothing to flush.
func TestControlledRootGoneBeforeStart(t *testing.T) {
	c := spawn(t)
	start := time.Now()
	c.conn.Close()
	if code := c.wait(); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("worker took %v to exit", d)
	}
	if !strings.Contains(c.stderr.String(), "dismissed") {
		t.Errorf("no dismissal logged: %s", c.stderr.String())
	}
}

// TestControlledGen2 runs a Generation 2 program under control (it
// echoes its console input): the start reply names the platform, the
// console is standard input and output, and the program's exit is the
// partition powering off.
func TestControlledGen2(t *testing.T) {
	platform := testplatform.Gen2(t)
	prog := testguest.Static64(t, t.TempDir(), filepath.Join("..", "gen2", "testdata", "echo.S"))
	c := spawn(t, "--partition", "g2")
	r := c.start(control.Start{Name: "g2", ID: "id-g2", Generation: 2, Program: prog, MemoryBytes: 16 << 20}, 16<<20)
	if r.Error != "" || r.Platform != platform {
		t.Fatalf("start reply %+v, want success on %s", r, platform)
	}
	io.WriteString(c.stdin, "over the console\n")
	c.waitStdout("over the console\n")
	c.stdin.Close()
	m := c.next()
	if m.Type != control.TypeStopped || !m.Stopped.PowerOff || m.Stopped.Reason != "program exited with status 0" {
		t.Fatalf("got %+v (stopped %+v)", m, m.Stopped)
	}
	if code := c.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestControlledNoPlatform: a start no platform can run is refused with
// every platform tried and why.
func TestControlledNoPlatform(t *testing.T) {
	hello := rom(t, "hello")
	c := spawn(t, "--accel", "ptrace")
	r := c.start(control.Start{Generation: 1, Firmware: hello, MemoryBytes: 16 << 20}, 16<<20)
	if !strings.Contains(r.Error, "no platform runs a Generation 1 partition here (tried ptrace: ") {
		t.Errorf("start reply %q", r.Error)
	}
	if code := c.wait(); code == 0 {
		t.Error("exit 0")
	}
}

// TestControlledBadStart: start requests that cannot run are answered
// with the reason, and the worker exits non-zero.
func TestControlledBadStart(t *testing.T) {
	hello := rom(t, "hello")
	for _, tc := range []struct {
		name string
		st   control.Start
		size uint64 // of the memfd
		want string
	}{
		{"memfd too small", control.Start{Generation: 1, Firmware: hello, MemoryBytes: 16 << 20}, 8 << 20, "guest memory"},
		{"no firmware", control.Start{Generation: 1, Firmware: "/nonexistent", MemoryBytes: 16 << 20}, 16 << 20, "firmware"},
		{"generation 2 without a program", control.Start{Generation: 2, MemoryBytes: 16 << 20}, 16 << 20, "program"},
		{"generation 2 given a ROM", control.Start{Generation: 2, Program: hello, MemoryBytes: 16 << 20}, 16 << 20, "not a static x86-64 executable"},
		{"generation 3", control.Start{Generation: 3, Firmware: hello, MemoryBytes: 16 << 20}, 16 << 20, "want 1 or 2"},
		{"too many processors", control.Start{Generation: 1, Firmware: hello, MemoryBytes: 16 << 20, Processors: 1000}, 16 << 20, "processors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.st.Generation == 1 {
				testplatform.RequireGen1(t) // else the worker refuses for the platform first
			}
			c := spawn(t)
			if r := c.start(tc.st, tc.size); !strings.Contains(r.Error, tc.want) {
				t.Errorf("start reply error %q, want it to mention %q", r.Error, tc.want)
			}
			if code := c.wait(); code == 0 {
				t.Error("exit 0")
			}
		})
	}
	t.Run("not a start", func(t *testing.T) {
		c := spawn(t)
		if r := c.request(&control.Message{Type: control.TypePause}); !strings.Contains(r.Error, "want \"start\"") {
			t.Errorf("reply %q", r.Error)
		}
		if code := c.wait(); code == 0 {
			t.Error("exit 0")
		}
	})
}

// TestFlags: the standalone and controlled flags do not mix, and a
// control descriptor must be a SEQPACKET socket.
func TestFlags(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--control-fd", "3", "--firmware", "x"}, 1, "--firmware"},
		{[]string{"--control-fd", "-2"}, 1, "descriptor"},
		{[]string{"--control-fd", "0"}, 1, "socket"}, // stdin: /dev/null
		{[]string{"--memory", "64M"}, 1, "one of --firmware (Generation 1) and --program (Generation 2) is required"},
		{[]string{"--firmware", "x", "--serial", "file"}, 1, "only stdio"},
		{[]string{"--firmware", "x", "extra"}, 1, "unexpected arguments"},
		{[]string{"--no-such-flag"}, 2, "not defined"},
		{[]string{"--help"}, 0, "-control-fd"},
	} {
		var stderr bytes.Buffer
		cmd := &exec.Cmd{Path: exe, Args: append([]string{"vmwp"}, tc.args...), Stderr: &stderr, Env: raceQuickExit()}
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}

func TestSetProcessNameTruncates(t *testing.T) {
	for in, want := range map[string]string{
		"vmwp:a":                  "vmwp:a",
		"vmwp:0123456789abcdef":   "vmwp:0123456789",
		"vmwp:aéééééé":            "vmwp:aéééé", // 15 bytes would split an é
		"vmwp:x\x00y":             "vmwp:xy",
		"vmwp:exactly-10":         "vmwp:exactly-10",
		"vmwp:exactly-10-and-one": "vmwp:exactly-10",
	} {
		if got := truncateComm(in); got != want {
			t.Errorf("truncateComm(%q) = %q, want %q", in, got, want)
		}
	}
}
