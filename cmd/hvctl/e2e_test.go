package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/internal/testplatform"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// The end-to-end tests build vmms and hvctl and run the hvctl binary
// against the real service, as a user would.

// buildBinaries builds vmms and hvctl into dir, and hvguest beside them
// (the default Generation 2 guest).
func buildBinaries(t *testing.T, dir string) (vmms, hvctl string) {
	t.Helper()
	vmms, hvctl = filepath.Join(dir, "vmms"), filepath.Join(dir, "hvctl")
	for bin, pkg := range map[string]string{vmms: "github.com/partita-hv/partita/cmd/vmms", hvctl: "github.com/partita-hv/partita/cmd/hvctl"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	testguest.Hvguest(t, dir)
	return vmms, hvctl
}

type syncBuffer = testenv.Buffer

// startVMMS runs vmms on stateDir, listening on listen, and returns the
// address it reports once it serves. It stops at the test's end.
func startVMMS(t *testing.T, bin, stateDir, listen string) string {
	t.Helper()
	cmd := exec.Command(bin, "--state-dir", stateDir, "--listen", listen, "--log-level", "debug")
	logs := &syncBuffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "vmms: listening on "); ok {
				addr <- a
			}
		}
	}()
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("vmms log:\n%s", logs.String())
		}
	})
	select {
	case a := <-addr:
		return a
	case <-done:
		t.Fatalf("vmms exited: %s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("vmms did not start: %s", logs.String())
	}
	return ""
}

// result is one hvctl run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "stderr:\n" + r.stderr
}

// hvctlRunner runs the hvctl binary in dir with env (and none of the
// caller's PARTITA_ variables).
type hvctlRunner struct {
	t   *testing.T
	bin string
	dir string
	env []string
}

// attach starts hvctl console (args) and waits until it says it is
// connected to name; it returns the command, its input and its outputs.
func (h hvctlRunner) attach(ctx context.Context, name string, args ...string) (*exec.Cmd, io.WriteCloser, *syncBuffer, *syncBuffer) {
	h.t.Helper()
	cmd := h.command(ctx, args...)
	out, errb := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, errb
	stdin, err := cmd.StdinPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	waitFor(h.t, "console", errb.String, "Connected to "+name, 20*time.Second)
	return cmd, stdin, out, errb
}

// command is hvctl with args, ready to start; ctx bounds its run.
func (h hvctlRunner) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Dir = h.dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARTITA_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, h.env...)
	return cmd
}

// run runs hvctl to its end (at most two minutes).
func (h hvctlRunner) run(args ...string) result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := h.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("hvctl %q: %v", args, err)
	}
	return r
}

// ok runs hvctl and wants exit status 0.
func (h hvctlRunner) ok(args ...string) string {
	h.t.Helper()
	r := h.run(args...)
	if r.code != 0 {
		h.t.Fatalf("hvctl %q: %v", args, r)
	}
	return r.stdout
}

// fails runs hvctl and wants exit status code with a one-line error on
// stderr that contains each of want.
func (h hvctlRunner) fails(code int, args []string, want ...string) result {
	h.t.Helper()
	r := h.run(args...)
	if r.code != code || !strings.HasPrefix(r.stderr, "hvctl: ") || (code == 1 && strings.Count(r.stderr, "\n") != 1) {
		h.t.Errorf("hvctl %q: want exit %d and one hvctl: line, got %v", args, code, r)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			h.t.Errorf("hvctl %q: stderr %q does not say %q", args, r.stderr, w)
		}
	}
	return r
}

// rows is a table's lines split into fields.
func rows(table string) [][]string {
	var out [][]string
	for _, line := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		out = append(out, strings.Fields(line))
	}
	return out
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs vmms")
	}
	bin := t.TempDir()
	vmmsBin, hvctlBin := buildBinaries(t, bin)
	state := t.TempDir()
	addr := startVMMS(t, vmmsBin, state, "127.0.0.1:0")

	// Files the definitions name, given relative to hvctl's directory.
	work := t.TempDir()
	touch(t, filepath.Join(work, "rom.bin"))
	touch(t, filepath.Join(work, "guest.elf"))
	touch(t, filepath.Join(work, "disk.raw"))
	touch(t, filepath.Join(work, "data.raw"))

	h := hvctlRunner{t: t, bin: hvctlBin, dir: work}
	g := []string{"--server", addr, "--state-dir", state}
	args := func(a ...string) []string { return append(append([]string(nil), a...), g...) }

	if out := h.ok(args("get-vm")...); out != "NAME  STATE  CPU  MEMORY  GEN  PLATFORM  UPTIME  PID  STATUS\n" {
		t.Errorf("get-vm with no partitions: %q", out)
	}

	out := h.ok(args("new-vm", "web1", "--generation", "1", "--memory", "128M", "--processors", "2",
		"--firmware", "rom.bin", "--disk", "disk.raw", "--switch", "lan")...)
	// The platform column depends on the host: KVM, or none for
	// Generation 1 without it.
	if r := rows(out); len(r) != 2 || len(r[1]) < 9 || strings.Join(r[1][:5], " ") != "web1 Off 2 128M 1" ||
		strings.Join(r[1][6:], " ") != "00:00:00 - Operating normally" {
		t.Errorf("new-vm web1 printed:\n%s", out)
	}
	// The global flags also go before the verb.
	out = h.ok(append(g, "-o", "json", "new-vm", "g2", "--generation", "2", "--memory", "1G",
		"--guest", "guest.elf", "--disk", "disk.raw", "--disk", "data.raw")...)
	var def wmiapi.DefineSystemResult
	if err := json.Unmarshal([]byte(out), &def); err != nil {
		t.Fatalf("new-vm -o json: %v\n%s", err, out)
	}
	if def.ResultingSystem.ElementName != "g2" || def.ResultingSystem.Generation != 2 || def.ResultingSystem.MemoryMB != 1024 {
		t.Errorf("new-vm g2: %+v", def.ResultingSystem)
	}
	var disks []string
	for _, rs := range def.ResultingResourceSettings {
		if rs.ResourceType == wmiapi.ResourceDisk {
			disks = append(disks, rs.HostResource...)
		}
	}
	if want := []string{filepath.Join(work, "disk.raw"), filepath.Join(work, "data.raw")}; strings.Join(disks, ",") != strings.Join(want, ",") {
		t.Errorf("g2 disks %q, want %q (made absolute)", disks, want)
	}

	out = h.ok(args("get-vm")...)
	if r := rows(out); len(r) != 3 || r[0][0] != "NAME" {
		t.Errorf("get-vm:\n%s", out)
	}
	var list []wmiapi.ComputerSystem
	if err := json.Unmarshal([]byte(h.ok(args("get-vm", "-o", "json")...)), &list); err != nil || len(list) != 2 {
		t.Fatalf("get-vm -o json: %v, %+v", err, list)
	}
	guid := map[string]string{}
	for _, s := range list {
		guid[s.ElementName] = s.Name
	}
	if guid["web1"] == "" || guid["g2"] != def.ResultingSystem.Name {
		t.Errorf("get-vm -o json names: %v", guid)
	}
	// A partition by its GUID.
	if r := rows(h.ok(args("get-vm", guid["web1"])...)); len(r) != 2 || r[1][0] != "web1" || r[1][1] != "Off" {
		t.Errorf("get-vm GUID: %v", r)
	}

	// Errors from the service: one line, with its code, exit 1.
	h.fails(1, args("new-vm", "web1", "--generation", "1", "--firmware", "rom.bin"), "conflict")
	h.fails(1, args("new-vm", "bad", "--generation", "1", "--firmware", "missing.bin"), "invalid", "missing.bin")
	h.fails(1, args("get-vm", "nosuch"), "not_found")
	h.fails(1, args("stop-vm", "web1"), "invalid_state")
	h.fails(1, args("get-job", "00000000-0000-0000-0000-000000000000"), "not_found")
	// Usage errors: exit 2 with the usage.
	r := h.fails(2, args("new-vm", "web3", "--generation", "1", "--memory", "100K"), "whole number of MiB")
	if !strings.Contains(r.stderr, "Usage: hvctl") {
		t.Errorf("usage error without the usage: %q", r.stderr)
	}

	// Following the console of a partition that is off ends at once.
	if out := h.ok(args("get-vmconsole", "web1", "--follow")...); out != "" {
		t.Errorf("get-vmconsole --follow of a partition that never ran: %q", out)
	}
	h.fails(1, args("console", "web1"), "web1 is Off")

	// A Generation 2 partition whose guest is no static executable: the
	// worker's reason reaches the user.
	h.fails(1, args("start-vm", "g2"), "not a static x86-64 executable")

	// A state change whose job ends in Exception (a ROM the worker
	// refuses) exits 1 with the job's description; get-job shows that
	// job.
	badROM := filepath.Join(t.TempDir(), "bad.rom")
	if err := os.WriteFile(badROM, []byte("not a ROM"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.ok(args("new-vm", "badrom", "--generation", "1", "--firmware", badROM)...)
	r = h.run(args("start-vm", "badrom")...)
	m := regexp.MustCompile(`^hvctl: start-vm badrom: job (\S+) ended in Exception \(error \d+\): \S.*\n$`).FindStringSubmatch(r.stderr)
	if r.code != 1 || m == nil {
		t.Fatalf("start-vm badrom: %v", r)
	}
	var j wmiapi.ConcreteJob
	if err := json.Unmarshal([]byte(h.ok(args("get-job", m[1], "-o", "json")...)), &j); err != nil {
		t.Fatal(err)
	}
	if j.JobState != wmiapi.JobException || j.ErrorDescription == "" || !strings.Contains(r.stderr, j.ErrorDescription) {
		t.Errorf("job %+v", j)
	}
	if r := rows(h.ok(args("get-job", m[1])...)); len(r) != 2 || r[1][0] != m[1] || r[1][2] != "Exception" {
		t.Errorf("get-job table: %v", r)
	}
	h.ok(args("remove-vm", "badrom")...)
	if out := h.ok(args("get-vmconsole", "g2")...); out != "" {
		t.Errorf("get-vmconsole of a partition that never ran: %q", out)
	}

	// The token: $PARTITA_TOKEN when there is no --state-dir; a wrong one
	// is refused.
	tok, err := os.ReadFile(filepath.Join(state, wmiapi.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	env := hvctlRunner{t: t, bin: hvctlBin, dir: work,
		env: []string{wmiapi.EnvServer + "=" + addr, wmiapi.EnvToken + "=" + strings.TrimSpace(string(tok))}}
	if r := rows(env.ok("get-vm", "web1")); len(r) != 2 || r[1][0] != "web1" {
		t.Errorf("get-vm with $PARTITA_SERVER and $PARTITA_TOKEN: %v", r)
	}
	bad := hvctlRunner{t: t, bin: hvctlBin, dir: work, env: []string{wmiapi.EnvServer + "=" + addr, wmiapi.EnvToken + "=wrong"}}
	bad.fails(1, []string{"get-vm"}, "unauthorized")

	h.ok(args("remove-vm", "web1")...)
	h.ok(args("remove-vm", guid["g2"])...)
	h.fails(1, args("remove-vm", "web1"), "not_found")
	if out := h.ok(args("get-vm", "-o", "json")...); strings.TrimSpace(out) != "[]" {
		t.Errorf("get-vm -o json after remove-vm: %q", out)
	}
}

// TestEndToEndUnixSocket runs hvctl against vmms on a Unix socket.
func TestEndToEndUnixSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs vmms")
	}
	vmmsBin, hvctlBin := buildBinaries(t, t.TempDir())
	state := t.TempDir()
	sock := filepath.Join(state, "api.sock")
	startVMMS(t, vmmsBin, state, "unix:"+sock)
	work := t.TempDir()
	touch(t, filepath.Join(work, "rom.bin"))
	h := hvctlRunner{t: t, bin: hvctlBin, dir: work, env: []string{wmiapi.EnvServer + "=unix:" + sock}}
	h.ok("--state-dir", state, "new-vm", "s1", "--generation", "1", "--firmware", "rom.bin")
	if r := rows(h.ok("--state-dir", state, "get-vm")); len(r) != 2 || r[1][0] != "s1" {
		t.Errorf("get-vm over the socket: %v", r)
	}
	h.ok("--state-dir", state, "remove-vm", "s1")
}

// waitFor polls text until it holds want, or fails the test.
func waitFor(t *testing.T, what string, text func() string, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(text(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q after %v in %q", what, want, limit, text())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEndToEndGen1 runs a SeaBIOS partition with the console guest
// through hvctl: start, follow and attach to its console, suspend and
// resume, shut down through the guest, start again, turn off, remove.
func TestEndToEndGen1(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs vmms")
	}
	testplatform.RequireGen1(t)
	rom := testenv.RequireFile(t, testguest.SeaBIOS, "seabios")
	work := t.TempDir()
	img, mbr := testguest.ConsoleDisk(t, work)
	vmmsBin, hvctlBin := buildBinaries(t, t.TempDir())
	state := t.TempDir()
	addr := startVMMS(t, vmmsBin, state, "127.0.0.1:0")
	h := hvctlRunner{t: t, bin: hvctlBin, dir: work, env: []string{wmiapi.EnvServer + "=" + addr}}
	name := fmt.Sprintf("hvctl-%d", os.Getpid()) // worker processes carry the name
	hv := func(a ...string) []string { return append([]string{"--state-dir", state}, a...) }
	// vm checks get-vm's row for the partition and returns it.
	vm := func(out, state string) []string {
		t.Helper()
		r := rows(out)
		if len(r) != 2 || len(r[1]) < 9 || r[1][0] != name || r[1][1] != state {
			t.Fatalf("want %s %s, got:\n%s", name, state, out)
		}
		return r[1]
	}

	vm(h.ok(hv("new-vm", name, "--generation", "1", "--memory", "32M", "--firmware", rom, "--disk", img)...), "Off")
	if row := vm(h.ok(hv("start-vm", name)...), "Running"); row[6] == "-" {
		t.Errorf("running without a PID: %v", row)
	}

	// get-vmconsole --follow streams until the partition stops.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	follow := h.command(ctx, hv("get-vmconsole", name, "--follow")...)
	followOut, followErr := &syncBuffer{}, &syncBuffer{}
	follow.Stdout, follow.Stderr = followOut, followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followDone := make(chan error, 1)
	go func() { followDone <- follow.Wait() }()
	waitFor(t, "get-vmconsole --follow", followOut.String, testguest.ConsoleToken, 90*time.Second)

	// console: input to the guest, which echoes it in upper case; ctrl-]
	// detaches.
	attach, stdin, attachOut, attachErr := h.attach(ctx, name, hv("console", name)...)
	io.WriteString(stdin, "hello hvctl\n")
	waitFor(t, "console", attachOut.String, "HELLO HVCTL", 20*time.Second)
	if strings.Contains(attachOut.String(), testguest.ConsoleToken) {
		t.Errorf("console replayed old output: %q", attachOut.String())
	}
	io.WriteString(stdin, "\x1d")
	if err := attach.Wait(); err != nil || !strings.Contains(attachErr.String(), "Detached from "+name) {
		t.Errorf("console after ctrl-]: %v, stderr %q", err, attachErr.String())
	}

	vm(h.ok(hv("suspend-vm", name)...), "Paused")
	vm(h.ok(hv("resume-vm", name)...), "Running")
	vm(h.ok(hv("stop-vm", name)...), "Off")
	// The guest copied its MBR to LBA 3; the worker flushed and closed the
	// image before the partition showed Off.
	if b, err := os.ReadFile(img); err != nil || !bytes.Equal(b[3*512:4*512], mbr) {
		t.Errorf("LBA 3 does not hold the guest's write (%v)", err)
	}
	select {
	case err := <-followDone:
		if err != nil {
			t.Errorf("get-vmconsole --follow: %v, stderr %q", err, followErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("get-vmconsole --follow still runs after the partition stopped")
	}
	if out := followOut.String(); !strings.Contains(out, "HELLO HVCTL") {
		t.Errorf("followed console: %q", out)
	}
	if out := h.ok(hv("get-vmconsole", name)...); !strings.Contains(out, testguest.ConsoleToken) || !strings.Contains(out, "HELLO HVCTL") {
		t.Errorf("get-vmconsole: %q", out)
	}

	vm(h.ok(hv("start-vm", name)...), "Running")
	h.fails(1, hv("remove-vm", name), "invalid_state")
	vm(h.ok(hv("stop-vm", name, "--turn-off")...), "Off")
	h.ok(hv("remove-vm", name)...)
}

// TestEndToEndGen2: a Generation 2 partition defined without --guest runs
// hvguest; hvctl shows its heartbeat, sets and lists key-value pairs,
// talks to its shell and shuts it down through the shutdown integration
// service.
func TestEndToEndGen2(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs vmms")
	}
	platform := testplatform.Gen2(t)
	work := t.TempDir()
	vmmsBin, hvctlBin := buildBinaries(t, t.TempDir())
	state := t.TempDir()
	addr := startVMMS(t, vmmsBin, state, "127.0.0.1:0")
	h := hvctlRunner{t: t, bin: hvctlBin, dir: work, env: []string{wmiapi.EnvServer + "=" + addr}}
	name := fmt.Sprintf("hvctl2-%d", os.Getpid())
	hv := func(a ...string) []string { return append([]string{"--state-dir", state}, a...) }

	h.ok(hv("new-vm", name, "--generation", "2", "--memory", "64M")...)
	h.ok(hv("set-vmkvp", name, "--item", "Site=lab", "--item", "Rack=7")...)
	h.ok(hv("start-vm", name)...)
	waitFor(t, "banner", func() string { return h.ok(hv("get-vmconsole", name)...) }, "hvguest> ", 30*time.Second)
	if r := rows(h.ok(hv("get-vm", name)...)); len(r) != 2 || len(r[1]) < 9 || r[1][1] != "Running" || r[1][5] != platform {
		t.Errorf("get-vm of a running Generation 2 partition, want it on %s: %v", platform, r)
	}
	waitFor(t, "heartbeat", func() string { return h.ok(hv("get-vmintegrationservice", name)...) }, "OK", 15*time.Second)
	waitFor(t, "KVP", func() string { return h.ok(hv("get-vmkvp", name)...) }, "OSName", 15*time.Second)
	out := h.ok(hv("get-vmkvp", name)...)
	have := map[string]bool{}
	for _, r := range rows(out) {
		have[strings.Join(r, " ")] = true
	}
	for _, want := range []string{"host Rack 7", "host Site lab", "intrinsic OSName Partita hvguest"} {
		if !have[want] {
			t.Errorf("get-vmkvp lacks %q:\n%s", want, out)
		}
	}
	h.ok(hv("remove-vmkvp", name, "--key", "Rack")...)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	attach, stdin, attachOut, _ := h.attach(ctx, name, hv("console", name)...)
	io.WriteString(stdin, "kvp\n")
	waitFor(t, "console", attachOut.String, "host  Site = lab", 20*time.Second)
	if strings.Contains(attachOut.String(), "Rack") {
		t.Errorf("the guest still has the removed item: %q", attachOut.String())
	}
	io.WriteString(stdin, "\x1d")
	attach.Wait()

	out = h.ok(hv("stop-vm", name)...)
	if r := rows(out); len(r) != 2 || r[1][1] != "Off" {
		t.Fatalf("after stop-vm:\n%s", out)
	}
	if c := h.ok(hv("get-vmconsole", name)...); !strings.Contains(c, "shutdown requested by the host") {
		t.Errorf("console after stop-vm: %q", c)
	}
	if out := h.ok(hv("get-vmintegrationservice", name)...); !strings.Contains(out, "No Contact") {
		t.Errorf("heartbeat when off:\n%s", out)
	}
}
