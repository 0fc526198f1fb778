package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/internal/testplatform"
	"github.com/partita-hv/partita/partition/accel"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// The tests here run the built vmms binary and talk to it over loopback
// HTTP, as a user would.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binary builds cmd/vmms once per test run.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "vmms-e2e-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "vmms"), ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		// hvguest beside vmms: the default Generation 2 guest.
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, "hvguest"), "../hvguest")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build hvguest: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "vmms")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// requireGen1 skips a test where no platform runs a Generation 1
// partition (KVM, or tcg with libunicorn).
func requireGen1(t testing.TB) string { return testplatform.RequireGen1(t) }

// vmms is one running root service.
type vmms struct {
	t     testing.TB
	cmd   *exec.Cmd
	dir   string
	base  string
	token string
	log   *lockedBuffer
	done  chan struct{}
}

type lockedBuffer = testenv.Buffer

// startVMMS runs vmms on dir and waits until it serves; it logs at debug
// level unless args say otherwise.
func startVMMS(t testing.TB, dir string, args ...string) *vmms {
	t.Helper()
	if len(args) == 0 {
		args = []string{"--log-level", "debug"}
	}
	cmd := exec.Command(binary(t), append([]string{"--state-dir", dir, "--listen", "127.0.0.1:0"}, args...)...)
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &vmms{t: t, cmd: cmd, dir: dir, log: logs, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "vmms: listening on "); ok {
				addr <- a
			}
		}
	}()
	go func() { cmd.Wait(); close(v.done) }()
	t.Cleanup(func() {
		v.stop()
		if t.Failed() {
			t.Logf("vmms log:\n%s", logs.String())
		}
	})
	select {
	case a := <-addr:
		v.base = "http://" + a
	case <-v.done:
		t.Fatalf("vmms exited: %s", logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("vmms did not start: %s", logs.String())
	}
	tok, err := os.ReadFile(filepath.Join(dir, wmiapi.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	v.token = strings.TrimSpace(string(tok))
	st, err := os.Stat(filepath.Join(dir, wmiapi.TokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, %v", st.Mode(), err)
	}
	return v
}

// stop sends SIGTERM and waits.
func (v *vmms) stop() {
	select {
	case <-v.done:
		return
	default:
	}
	v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(30 * time.Second):
		v.cmd.Process.Kill()
		<-v.done
	}
}

// call sends a JSON request and decodes a JSON answer into out (if not
// nil); it returns the status.
func (v *vmms) call(method, path string, in, out any) int {
	v.t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			v.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, v.base+path, body)
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			v.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	if resp.StatusCode >= 300 && out == nil {
		v.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode
}

// defineGen1 defines a SeaBIOS partition booting img.
func (v *vmms) defineGen1(name, img string) string {
	v.t.Helper()
	rom := testenv.RequireFile(v.t, testguest.SeaBIOS, "seabios")
	var res wmiapi.DefineSystemResult
	status := v.call("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem", wmiapi.DefineSystemRequest{
		SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: name, VirtualSystemSubType: wmiapi.SubTypeGen1, FirmwareFile: rom},
		ResourceSettings: []wmiapi.ResourceSettingData{
			{ResourceType: wmiapi.ResourceMemory, VirtualQuantity: 32},
			{ResourceType: wmiapi.ResourceDisk, HostResource: []string{img}},
		}}, &res)
	if status != 201 {
		v.t.Fatalf("define %s: %d", name, status)
	}
	return res.ResultingSystem.Name
}

// change requests a state and waits for its job; it returns the job.
func (v *vmms) change(name string, state uint16) wmiapi.ConcreteJob {
	v.t.Helper()
	var res wmiapi.StateChangeResult
	if status := v.call("POST", wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/RequestStateChange", wmiapi.StateChangeRequest{RequestedState: state}, &res); status != 202 {
		v.t.Fatalf("RequestStateChange(%s, %d): %d", name, state, status)
	}
	if res.ReturnValue != wmiapi.ReturnJobStarted {
		v.t.Fatalf("ReturnValue %d", res.ReturnValue)
	}
	return v.waitJob(res.Job.InstanceID, 60*time.Second)
}

func (v *vmms) waitJob(id string, limit time.Duration) wmiapi.ConcreteJob {
	v.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var j wmiapi.ConcreteJob
		if status := v.call("GET", wmiapi.Prefix+"/Msvm_ConcreteJob/"+id, nil, &j); status != 200 {
			v.t.Fatalf("get job: %d", status)
		}
		if j.JobState != wmiapi.JobRunning && j.JobState != wmiapi.JobNew && j.JobState != wmiapi.JobStarting {
			return j
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("job %s still running after %v: %+v", id, limit, j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (v *vmms) system(name string) wmiapi.ComputerSystem {
	v.t.Helper()
	var cs wmiapi.ComputerSystem
	if status := v.call("GET", wmiapi.Prefix+"/Msvm_ComputerSystem/"+name, nil, &cs); status != 200 {
		v.t.Fatalf("get %s: %d", name, status)
	}
	return cs
}

// waitConsole follows the console until it holds every want, or fails.
func (v *vmms) waitConsole(name string, limit time.Duration, want ...string) string {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", v.base+wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/console?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		v.t.Fatalf("console: %d", resp.StatusCode)
	}
	var got []byte
	buf := make([]byte, 4096)
	for {
		all := true
		for _, w := range want {
			if !bytes.Contains(got, []byte(w)) {
				all = false
			}
		}
		if all {
			return string(got)
		}
		if err != nil {
			v.t.Fatalf("console of %s ended (%v) before %q; got %q", name, err, want, got)
		}
		var n int
		n, err = resp.Body.Read(buf)
		got = append(got, buf[:n]...)
	}
}

func (v *vmms) sendConsole(name, s string) {
	v.t.Helper()
	req, _ := http.NewRequest("POST", v.base+wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/console", strings.NewReader(s))
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		v.t.Fatalf("console input: %d", resp.StatusCode)
	}
}

// workers lists live worker processes of a partition name: argv[0]
// "vmwp" and "--partition NAME" on their command line.
func workers(name string) []int {
	return processes(func(pid string) bool {
		b, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil {
			return false
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		return len(args) >= 3 && args[0] == "vmwp" && args[1] == "--partition" && args[2] == name
	})
}

// processes lists the pids in /proc that match says yes to.
func processes(match func(pid string) bool) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && match(e.Name()) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unique makes partition names no other test run on this machine uses.
func unique(base string) string {
	return fmt.Sprintf("%s-%d-%d", base, os.Getpid(), time.Now().UnixNano()%100000)
}

// TestEndToEndGen1 drives a SeaBIOS partition through the API: define,
// start, console output and input, shut down through the ACPI power
// button, the disk written and flushed, start again, turn off, destroy.
func TestEndToEndGen1(t *testing.T) {
	requireGen1(t)
	v := startVMMS(t, t.TempDir())
	img, mbr := testguest.ConsoleDisk(t, t.TempDir())
	name := unique("e2e")
	id := v.defineGen1(name, img)

	start := time.Now()
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start job: %+v", j)
	}
	cs := v.system(name)
	if cs.EnabledState != wmiapi.StateRunning || cs.ProcessID == 0 || cs.Name != id || cs.HealthState != wmiapi.HealthOK {
		t.Fatalf("after start: %+v", cs)
	}
	if pids := workers(name); len(pids) != 1 || pids[0] != cs.ProcessID {
		t.Fatalf("worker processes named %s: %v, API says %d", name, pids, cs.ProcessID)
	}
	out := v.waitConsole(name, 90*time.Second, "SeaBIOS (version", testguest.SectorTwoText, testguest.ConsoleToken)
	t.Logf("token after %v", time.Since(start).Round(time.Millisecond))
	if strings.Contains(out, "DISK-FAILED") {
		t.Fatalf("guest disk I/O failed: %q", out)
	}
	v.sendConsole(name, "echo me\n")
	v.waitConsole(name, 20*time.Second, "ECHO ME")

	// Pause and resume: the worker parks its vCPUs and runs them again.
	if j := v.change(name, wmiapi.RequestPaused); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("pause job: %+v", j)
	}
	if cs := v.system(name); cs.EnabledState != wmiapi.StatePaused || cs.ProcessID == 0 {
		t.Fatalf("after pause: %+v", cs)
	}
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("resume job: %+v", j)
	}
	if cs := v.system(name); cs.EnabledState != wmiapi.StateRunning {
		t.Fatalf("after resume: %+v", cs)
	}
	v.sendConsole(name, "after resume\n")
	v.waitConsole(name, 20*time.Second, "AFTER RESUME")
	if m := v.scrape(); !strings.Contains(m, `partita_vcpu_exits_total{partition="`+name+`",platform="`+requireGen1(t)+`",reason="io"}`) {
		t.Errorf("no vCPU exit counts for %s in the scrape", name)
	}

	// A reset from inside the guest is a power cycle: the root starts the
	// partition again in a new worker.
	oldPID := v.system(name).ProcessID
	v.sendConsole(name, "!")
	deadline := time.Now().Add(30 * time.Second)
	for {
		cs := v.system(name)
		if cs.EnabledState == wmiapi.StateRunning && cs.ProcessID != 0 && cs.ProcessID != oldPID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no restart after the guest's reset: %+v", cs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The console goes on across the reset: the second boot's token follows
	// the first's.
	deadline = time.Now().Add(90 * time.Second)
	for strings.Count(v.consoleText(name), testguest.ConsoleToken) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the guest did not boot again: %q", v.consoleText(name))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m := v.scrape(); !strings.Contains(m, `partita_worker_exits_total{kind="guest_reset"} 1`) {
		t.Errorf("the reset is not counted")
	}

	// Shut down: the guest listens for the power button and powers off.
	if j := v.change(name, wmiapi.RequestShutDown); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("shut down job: %+v", j)
	}
	cs = v.system(name)
	if cs.EnabledState != wmiapi.StateOff || cs.ProcessID != 0 || cs.LastStopReason != "guest powered off" || cs.HealthState != wmiapi.HealthOK {
		t.Fatalf("after shut down: %+v", cs)
	}
	if pids := workers(name); len(pids) != 0 {
		t.Fatalf("workers left after shut down: %v", pids)
	}
	// The guest copied its MBR to LBA 3; the worker flushed and closed
	// the image before it reported the partition off.
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[3*512:4*512], mbr) {
		t.Fatalf("LBA 3 does not hold the guest's write")
	}

	// Start again and turn it off.
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("second start: %+v", j)
	}
	if j := v.change(name, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", j)
	}
	if cs := v.system(name); cs.EnabledState != wmiapi.StateOff || cs.LastStopReason != "turned off" {
		t.Fatalf("after turn off: %+v", cs)
	}
	if status := v.call("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DestroySystem", wmiapi.DestroySystemRequest{AffectedSystem: name}, nil); status != 200 {
		t.Fatalf("destroy: %d", status)
	}
}

// callQuiet is call for loops that expect the root to vanish: transport
// errors are a status of 0, not a failure.
func (v *vmms) callQuiet(method, path string, in any) int {
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, v.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// scrape returns /metrics.
func (v *vmms) scrape() string {
	v.t.Helper()
	resp, err := http.Get(v.base + "/metrics")
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestShutDownWithoutListener: a guest that does not listen for the ACPI
// power button (SeaBIOS with no disk to boot) gets a failed shut-down job
// with the reason, and keeps running until turned off.
func TestShutDownWithoutListener(t *testing.T) {
	requireGen1(t)
	rom := testenv.RequireFile(t, testguest.SeaBIOS, "seabios")
	v := startVMMS(t, t.TempDir())
	name := unique("deaf")
	if status := v.call("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem", wmiapi.DefineSystemRequest{
		SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: name, FirmwareFile: rom}}, nil); status != 201 {
		t.Fatalf("define: %d", status)
	}
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start: %+v", j)
	}
	v.waitConsole(name, 60*time.Second, "SeaBIOS (version")
	j := v.change(name, wmiapi.RequestShutDown)
	if j.JobState != wmiapi.JobException || !strings.Contains(j.ErrorDescription, "does not listen for the ACPI power button") {
		t.Fatalf("shut down of a deaf guest: %+v", j)
	}
	if cs := v.system(name); cs.EnabledState != wmiapi.StateRunning {
		t.Fatalf("after the refused shut down: %+v", cs)
	}
	if j := v.change(name, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", j)
	}
}

// consoleText returns the whole console output the service keeps.
func (v *vmms) consoleText(name string) string {
	v.t.Helper()
	req, _ := http.NewRequest("GET", v.base+wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/console", nil)
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestGen2ProgramThroughTheAPI: a Generation 2 partition running a static
// program starts through the API, its output reaches the console
// endpoint, it pauses and resumes, and it turns off.
func TestGen2ProgramThroughTheAPI(t *testing.T) {
	testplatform.Gen2(t)
	v := startVMMS(t, t.TempDir())
	prog := testguest.Gen2Program(t, t.TempDir())
	name := unique("gen2")
	v.startGen2(name, prog, 16)
	if cs := v.system(name); cs.EnabledState != wmiapi.StateRunning || cs.Generation != 2 || cs.ProcessID == 0 {
		t.Fatalf("after start: %+v", cs)
	}
	v.waitConsole(name, 20*time.Second, testguest.Gen2Banner, "...")
	// Pause: the ticks stop; resume: they go on.
	if j := v.change(name, wmiapi.RequestPaused); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("pause: %+v", j)
	}
	if cs := v.system(name); cs.EnabledState != wmiapi.StatePaused {
		t.Fatalf("after pause: %+v", cs)
	}
	before := len(v.consoleText(name))
	time.Sleep(500 * time.Millisecond)
	if after := len(v.consoleText(name)); after > before+1 {
		t.Fatalf("console grew from %d to %d bytes while paused", before, after)
	}
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("resume: %+v", j)
	}
	grown := time.Now().Add(10 * time.Second)
	for len(v.consoleText(name)) < before+3 {
		if time.Now().After(grown) {
			t.Fatalf("no ticks after resume")
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := v.scrape()
	if !strings.Contains(m, `partita_vcpu_exits_total{partition="`+name+`",platform="`+testplatform.Gen2(t)+`",reason="syscall"}`) {
		t.Errorf("no system-call count in the scrape")
	}
	// The program makes system call 500 once at start: unserved, counted.
	if !strings.Contains(m, `partita_guest_unserved_syscalls_total{partition="`+name+`",syscall="500"} 1`) {
		t.Errorf("the unserved system call is not in the scrape")
	}
	if j := v.change(name, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", j)
	}
	if cs := v.system(name); cs.EnabledState != wmiapi.StateOff || cs.LastStopReason != "turned off" {
		t.Fatalf("after turn off: %+v", cs)
	}
}

// TestGoGuestThroughTheAPI: a Generation 2 partition running a Go program
// starts through the API; the program sees the processors the definition
// gives it, and its output (goroutines, timers, a 64 MiB allocation)
// reaches the console endpoint; it powers off when the program exits.
func TestGoGuestThroughTheAPI(t *testing.T) {
	testplatform.Gen2(t)
	v := startVMMS(t, t.TempDir())
	prog := testguest.GoGuest(t, t.TempDir())
	name := unique("goguest")
	v.startGen2(name, prog, 256, wmiapi.ResourceSettingData{ResourceType: wmiapi.ResourceProcessor, VirtualQuantity: 2})
	v.waitConsole(name, 60*time.Second, "processors 2\n", "goroutines done", "timers done true", "allocated 67108864 57")
	if cs := v.waitOff(name, 30*time.Second); cs.LastStopReason != "program exited with status 0" || cs.HealthState != wmiapi.HealthOK {
		t.Fatalf("after the program: %+v", cs)
	}
}

// TestGen2ConsoleInput: bytes sent to a Gen2 partition's console through
// the API reach its program's standard input.
func TestGen2ConsoleInput(t *testing.T) {
	testplatform.Gen2(t)
	v := startVMMS(t, t.TempDir())
	prog := testguest.Gen2Echo(t, t.TempDir())
	name := unique("g2echo")
	v.startGen2(name, prog, 16)
	v.sendConsole(name, "through the API\n")
	v.waitConsole(name, 20*time.Second, "through the API")
	if j := v.change(name, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", j)
	}
}

// defineGen2 defines a Generation 2 partition running prog, with memMB of
// memory and any further resources given.
func (v *vmms) defineGen2(name, prog string, memMB uint64, more ...wmiapi.ResourceSettingData) {
	v.t.Helper()
	if status := v.call("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem", wmiapi.DefineSystemRequest{
		SystemSettings:   wmiapi.VirtualSystemSettingData{ElementName: name, VirtualSystemSubType: wmiapi.SubTypeGen2, GuestFile: prog},
		ResourceSettings: append([]wmiapi.ResourceSettingData{{ResourceType: wmiapi.ResourceMemory, VirtualQuantity: memMB}}, more...)}, nil); status != 201 {
		v.t.Fatalf("define %s: %d", name, status)
	}
}

// TestHvguestThroughTheAPI is issue 5's acceptance: a Generation 2
// partition defined without a GuestFile runs hvguest (beside vmms); its
// banner reaches the console endpoint through the synthetic console; its
// shell answers a command sent through the API; KVP items flow both
// ways; the heartbeat reads OK, turns to lost while the partition is
// paused and OK again after resume; InitiateShutdown ends it cleanly.
func TestHvguestThroughTheAPI(t *testing.T) {
	testplatform.Gen2(t)
	v := startVMMS(t, t.TempDir())
	name := unique("hvguest")
	v.defineGen2(name, "", 64)
	// A host item defined before the start reaches the guest when it connects.
	v.addKVP(name, "BeforeStart", "set while off")
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start: %+v", j)
	}
	v.waitConsole(name, 30*time.Second, "Partita hvguest: VMBus 5.3, 5 devices: console (VMBus UART), heartbeat, key-value pair exchange, shutdown, time sync")
	v.waitConsole(name, 10*time.Second, "hvguest> ")
	v.sendConsole(name, "echo through VMBus\n")
	v.waitConsole(name, 10*time.Second, "\r\nthrough VMBus\r\n")

	// KVP: the guest's items, intrinsic and its own, read through the API;
	// a host item pushed while it runs.
	v.sendConsole(name, "kvp set Role test guest\n")
	v.addKVP(name, "HostName", "partita-root")
	v.sendConsole(name, "kvp\n")
	v.waitConsole(name, 10*time.Second, "host  BeforeStart = set while off", "host  HostName = partita-root")
	var k wmiapi.KvpExchangeComponent
	deadline := time.Now().Add(10 * time.Second)
	for {
		if status := v.call("GET", wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/Msvm_KvpExchangeComponent", nil, &k); status != 200 {
			t.Fatalf("KVP: %d", status)
		}
		if len(k.GuestExchangeItems) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(k.GuestExchangeItems) != 1 || k.GuestExchangeItems[0] != (wmiapi.KvpExchangeDataItem{Name: "Role", Data: "test guest", Source: wmiapi.KvpSourceGuest}) {
		t.Errorf("guest items %+v", k.GuestExchangeItems)
	}
	found := false
	for _, it := range k.GuestIntrinsicExchangeItems {
		found = found || it.Name == "OSName" && it.Data == "Partita hvguest"
	}
	if !found || len(k.HostExchangeItems) != 2 {
		t.Errorf("intrinsic %+v, host %+v", k.GuestIntrinsicExchangeItems, k.HostExchangeItems)
	}

	// Heartbeat: OK, lost while paused, OK after resume.
	v.waitHeartbeat(name, wmiapi.StatusOK, 15*time.Second)
	if j := v.change(name, wmiapi.RequestPaused); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("pause: %+v", j)
	}
	paused := time.Now()
	v.waitHeartbeat(name, wmiapi.StatusLostCommunication, 20*time.Second)
	t.Logf("heartbeat lost %v after the pause", time.Since(paused).Round(time.Millisecond))
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("resume: %+v", j)
	}
	v.waitHeartbeat(name, wmiapi.StatusOK, 15*time.Second)

	// InitiateShutdown: accepted, then the partition is Off with the
	// program's clean exit recorded.
	var res wmiapi.MethodResult
	if status := v.call("POST", wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/Msvm_ShutdownComponent/InitiateShutdown",
		wmiapi.ShutdownRequest{Reason: "end of test"}, &res); status != 200 || res.ReturnValue != 0 {
		t.Fatalf("InitiateShutdown: %d %+v", status, res)
	}
	v.waitConsole(name, 10*time.Second, "shutdown requested by the host: end of test")
	if cs := v.waitOff(name, 30*time.Second); cs.HealthState != wmiapi.HealthOK || cs.LastStopReason != "program exited with status 0" {
		t.Errorf("after a clean shutdown: %+v", cs)
	}
	// Off: no contact, and shutting down again is refused clearly.
	v.waitHeartbeat(name, wmiapi.StatusNoContact, time.Second)
	if status := v.call("POST", wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/Msvm_ShutdownComponent/InitiateShutdown",
		wmiapi.ShutdownRequest{}, nil); status != 409 && status != 422 {
		t.Errorf("InitiateShutdown when off: %d", status)
	}
}

func (v *vmms) addKVP(name, key, data string) {
	v.t.Helper()
	if status := v.call("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/AddKvpItems", wmiapi.KvpItemsRequest{
		TargetSystem: name, DataItems: []wmiapi.KvpExchangeDataItem{{Name: key, Data: data}}}, nil); status != 200 {
		v.t.Fatalf("AddKvpItems: %d", status)
	}
}

// heartbeat returns the heartbeat's first OperationalStatus.
func (v *vmms) heartbeat(name string) uint16 {
	v.t.Helper()
	var h wmiapi.HeartbeatComponent
	if status := v.call("GET", wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/Msvm_HeartbeatComponent", nil, &h); status != 200 || len(h.OperationalStatus) == 0 {
		v.t.Fatalf("heartbeat: %d %+v", status, h)
	}
	return h.OperationalStatus[0]
}

func (v *vmms) waitHeartbeat(name string, want uint16, limit time.Duration) {
	v.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := v.heartbeat(name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("heartbeat %d, want %d", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHostileGen2Guest: a guest that sends garbage hypercalls and channel
// messages and scribbles over its ring headers and SynIC pages stops at
// most its own channels or partition; the root and another partition
// (hvguest) keep running, and the faults are counted.
func TestHostileGen2Guest(t *testing.T) {
	testplatform.Gen2(t)
	v := startVMMS(t, t.TempDir())
	good := unique("good")
	v.startHvguest(good)

	bin := testguest.GoProgram(t, t.TempDir(), "cmd/vmms/testdata/hostileguest")
	bad := unique("hostile")
	v.startGen2(bad, bin, 64)
	v.waitConsole(bad, 30*time.Second, "hostile: ring headers scribbled", "hostile: hypercalls done", "hostile: system calls 0-450 done", "hostile: still alive")
	// The counters, while it runs.
	m := v.scrape()
	for _, ev := range []string{"protocol_errors", "channel_failures"} {
		if !regexp.MustCompile(`partita_vmbus_events_total\{event="` + ev + `",partition="` + bad + `"\} [1-9]`).MatchString(m) {
			t.Errorf("no %s counted for the hostile partition", ev)
		}
	}
	// The good partition's console and integration services move packets
	// both ways.
	for _, ev := range []string{"packets_from_guest", "packets_to_guest", "interrupts_to_guest", "guest_wakeups"} {
		if !regexp.MustCompile(`partita_vmbus_events_total\{event="` + ev + `",partition="` + good + `"\} [1-9]`).MatchString(m) {
			t.Errorf("no %s counted for %s", ev, good)
		}
	}
	// Partitions whose programs attack the platform itself (the 32-bit
	// system-call gate, a privileged instruction, the kernel's vsyscall
	// page, the platform's own code) end, each with its reason, while
	// the others run.
	attack := testguest.Static64(t, t.TempDir(), filepath.Join("..", "..", "partition", "gen2", "testdata", "attack.S"))
	for _, mode := range []string{"int80", "hlt", "vsyscall", "stub"} {
		name := fmt.Sprintf("atk%d-%s", os.Getpid(), mode) // the program's mode is its name's last part
		v.startGen2(name, attack, 16)
		if cs := v.waitOff(name, 10*time.Second); cs.HealthState != wmiapi.HealthMajorFailure || !strings.Contains(cs.LastStopReason, "program fault") {
			t.Errorf("%s: %+v", mode, cs)
		} else {
			t.Logf("%s: %s", mode, cs.LastStopReason)
		}
	}
	// It survived its own garbage; told to, it exits. The other
	// partition and the root go on.
	v.sendConsole(bad, "bye\n")
	t.Logf("hostile partition ended: %+v", v.waitOff(bad, 30*time.Second))
	if cs := v.system(good); cs.EnabledState != wmiapi.StateRunning {
		t.Fatalf("the good partition is %d", cs.EnabledState)
	}
	v.sendConsole(good, "echo still here\n")
	v.waitConsole(good, 10*time.Second, "\r\nstill here\r\n")
	v.waitHeartbeat(good, wmiapi.StatusOK, 10*time.Second)
	if j := v.change(good, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", j)
	}
}

// TestDemo: vmms --demo (what ./run starts) brings up a Generation 1
// SeaBIOS partition and a Generation 2 hvguest partition.
func TestDemo(t *testing.T) {
	testplatform.Gen2(t)
	testenv.RequireFile(t, "/usr/share/seabios/bios.bin", "seabios")
	v := startVMMS(t, t.TempDir(), "--demo")
	if _, err := accel.Resolve(accel.Auto, 1); err == nil {
		v.waitConsole("demo-gen1", 60*time.Second, "SeaBIOS (version")
	} else {
		// Without KVM the demo's PC does not start, and says why.
		cs := v.system("demo-gen1")
		for deadline := time.Now().Add(30 * time.Second); cs.EnabledState != wmiapi.StateOff && time.Now().Before(deadline); cs = v.system("demo-gen1") {
			time.Sleep(20 * time.Millisecond)
		}
		if cs.EnabledState != wmiapi.StateOff || cs.HealthState != wmiapi.HealthMajorFailure ||
			!strings.Contains(cs.LastStopReason, "no platform runs a Generation 1 partition here (tried kvm:") {
			t.Errorf("demo-gen1 without a platform: %+v", cs)
		}
	}
	// The demo defines its partitions one after the other.
	for deadline := time.Now().Add(30 * time.Second); v.call("GET", wmiapi.Prefix+"/Msvm_ComputerSystem/demo-gen2", nil, nil) != 200; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the demo never defined demo-gen2")
		}
	}
	v.waitConsole("demo-gen2", 30*time.Second, "Partita hvguest: VMBus", "hvguest> ")
	v.sendConsole("demo-gen2", "devices\n")
	v.waitConsole("demo-gen2", 10*time.Second, "console (VMBus UART)")
}

// TestGen2ShutDownJob: RequestStateChange(4) shuts a Generation 2 guest
// down through its shutdown integration service; a guest without one
// (a program that never connects VMBus) gets a job in Exception.
func TestGen2ShutDownJob(t *testing.T) {
	testplatform.Gen2(t)
	v := startVMMS(t, t.TempDir())
	name := unique("g2shut")
	v.startHvguest(name)
	if j := v.change(name, wmiapi.RequestShutDown); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("shut down: %+v", j)
	}
	if cs := v.system(name); cs.EnabledState != wmiapi.StateOff {
		t.Fatalf("state %d after the shutdown job", cs.EnabledState)
	}
	v.waitConsole(name, time.Second, "shutdown requested by the host")

	deaf := unique("g2deaf")
	v.defineGen2(deaf, testguest.Gen2Echo(t, t.TempDir()), 16)
	if j := v.change(deaf, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start: %+v", j)
	}
	if j := v.change(deaf, wmiapi.RequestShutDown); j.JobState != wmiapi.JobException || !strings.Contains(j.ErrorDescription, "integration service") {
		t.Fatalf("shut down a guest without the shutdown IC: %+v", j)
	}
	if j := v.change(deaf, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", j)
	}
}

// startHvguest defines a Generation 2 partition without a GuestFile (so
// it runs hvguest), starts it and waits for the shell's prompt.
func (v *vmms) startHvguest(name string) {
	v.t.Helper()
	v.startGen2(name, "", 64)
	v.waitConsole(name, 30*time.Second, "hvguest> ")
}

// startGen2 defines a Generation 2 partition running prog ("" for
// hvguest) in memMB MiB and starts it.
func (v *vmms) startGen2(name, prog string, memMB uint64, more ...wmiapi.ResourceSettingData) {
	v.t.Helper()
	v.defineGen2(name, prog, memMB, more...)
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		v.t.Fatalf("start %s: %+v", name, j)
	}
}

// waitOff waits until a partition is Off and returns it.
func (v *vmms) waitOff(name string, limit time.Duration) wmiapi.ComputerSystem {
	v.t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
		cs := v.system(name)
		if cs.EnabledState == wmiapi.StateOff {
			return cs
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("%s still %d after %v", name, cs.EnabledState, limit)
		}
	}
}

// TestGen2StartsLeakNothing: starting and turning off a Generation 2
// partition again and again leaves the root with no more descriptors or
// goroutines than before (each start makes a memfd, a VMBus socket, and
// an eventfd per channel doorbell).
func TestGen2StartsLeakNothing(t *testing.T) {
	testplatform.Gen2(t)
	v := startVMMS(t, t.TempDir())
	name := unique("leak")
	v.startHvguest(name)
	if j := v.change(name, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", j)
	}
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", v.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	goroutines := func() int {
		m := v.scrape()
		g := regexp.MustCompile(`(?m)^go_goroutines (\d+)`).FindStringSubmatch(m)
		if g == nil {
			t.Fatal("no go_goroutines in the metrics")
		}
		n, _ := strconv.Atoi(g[1])
		return n
	}
	time.Sleep(100 * time.Millisecond) // the spare worker settles
	fd0, g0 := fds(), goroutines()
	for i := 0; i < 8; i++ {
		if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
			t.Fatalf("start %d: %+v", i, j)
		}
		// A line only this run answers: the guest is up, its channels open.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if v.heartbeat(name) == wmiapi.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d: no heartbeat", i)
			}
		}
		v.sendConsole(name, fmt.Sprintf("echo run %d\n", i))
		v.waitConsole(name, 10*time.Second, fmt.Sprintf("\r\nrun %d\r\n", i))
		if j := v.change(name, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
			t.Fatalf("turn off %d: %+v", i, j)
		}
	}
	time.Sleep(100 * time.Millisecond)
	fd1, g1 := fds(), goroutines()
	t.Logf("descriptors %d -> %d, goroutines %d -> %d over 8 starts", fd0, fd1, g0, g1)
	if fd1 > fd0+2 {
		t.Errorf("descriptors grew from %d to %d over 8 starts", fd0, fd1)
	}
	if g1 > g0+4 {
		t.Errorf("goroutines grew from %d to %d over 8 starts", g0, g1)
	}
}

// TestLargeGen2ThroughTheAPI: a Generation 2 partition of 64 GiB, more
// than these hosts have, is defined and runs hvguest through the API;
// its memory stays sparse (the worker's resident memory stays small), a
// 66 GiB one is refused.
func TestLargeGen2ThroughTheAPI(t *testing.T) {
	testplatform.Gen2(t)
	v := startVMMS(t, t.TempDir())
	name := unique("big")
	v.startGen2(name, "", 64<<10)
	v.waitConsole(name, 30*time.Second, "hvguest> ")
	cs := v.system(name)
	if cs.MemoryMB != 64<<10 || cs.EnabledState != wmiapi.StateRunning {
		t.Fatalf("%+v", cs)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cs.ProcessID))
	if err != nil {
		t.Fatal(err)
	}
	rss := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status)
	if rss == nil {
		t.Fatalf("no VmRSS in %s", status)
	}
	if kb, _ := strconv.Atoi(string(rss[1])); kb > 512<<10 {
		t.Errorf("the worker of a 64 GiB partition holds %d MiB", kb>>10)
	}
	if j := v.change(name, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", j)
	}
	code := v.call("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem", wmiapi.DefineSystemRequest{
		SystemSettings:   wmiapi.VirtualSystemSettingData{ElementName: unique("huge"), VirtualSystemSubType: wmiapi.SubTypeGen2},
		ResourceSettings: []wmiapi.ResourceSettingData{{ResourceType: wmiapi.ResourceMemory, VirtualQuantity: 66 << 10}}}, nil)
	if code != 422 {
		t.Errorf("a 66 GiB partition: %d, want 422", code)
	}
}
