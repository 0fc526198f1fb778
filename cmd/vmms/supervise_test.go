package main

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"encoding/json"

	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/internal/testplatform"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// TestWorkerKilled: kill -9 of one worker moves its partition to Off with
// a reason within a second; the other partition and the API keep going.
func TestWorkerKilled(t *testing.T) {
	requireGen1(t)
	v := startVMMS(t, t.TempDir())
	names := []string{unique("victim"), unique("bystander")}
	for _, n := range names {
		img, _ := testguest.ConsoleDisk(t, t.TempDir())
		v.defineGen1(n, img)
		if j := v.change(n, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
			t.Fatalf("start %s: %+v", n, j)
		}
	}
	v.waitConsole(names[1], 90*time.Second, testguest.ConsoleToken)
	pid := v.system(names[0]).ProcessID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for {
		cs := v.system(names[0])
		if cs.EnabledState == wmiapi.StateOff {
			if !strings.Contains(cs.LastStopReason, "killed") || cs.HealthState != wmiapi.HealthCriticalFailure {
				t.Fatalf("after kill: %+v", cs)
			}
			t.Logf("Off %v after kill -9: %q", time.Since(killed).Round(time.Millisecond), cs.LastStopReason)
			break
		}
		if time.Since(killed) > time.Second {
			t.Fatalf("still %d one second after kill -9", cs.EnabledState)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cs := v.system(names[1]); cs.EnabledState != wmiapi.StateRunning {
		t.Fatalf("bystander: %+v", cs)
	}
	v.sendConsole(names[1], "still there\n")
	v.waitConsole(names[1], 20*time.Second, "STILL THERE")
	if !strings.Contains(v.scrape(), `partita_worker_crashes_total 1`) {
		t.Errorf("crash not counted")
	}
	// The crashed partition starts again.
	if j := v.change(names[0], wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("restart after crash: %+v", j)
	}
	if cs := v.system(names[0]); cs.HealthState != wmiapi.HealthOK || cs.EnabledState != wmiapi.StateRunning {
		t.Fatalf("after restart: %+v", cs)
	}
}

// TestRootRestart: after kill -9 of the root, its workers go away by
// themselves; a new root on the same state directory has every
// definition back, Off, and no worker of the old one is left.
func TestRootRestart(t *testing.T) {
	requireGen1(t)
	dir := t.TempDir()
	v := startVMMS(t, dir)
	name := unique("restart")
	img, _ := testguest.ConsoleDisk(t, t.TempDir())
	id := v.defineGen1(name, img)
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start: %+v", j)
	}
	if len(workers(name)) != 1 {
		t.Fatal("no worker running")
	}
	v.cmd.Process.Kill()
	<-v.done
	deadline := time.Now().Add(5 * time.Second)
	for len(workers(name)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("worker still alive 5 s after the root died: %v", workers(name))
		}
		time.Sleep(20 * time.Millisecond)
	}
	v2 := startVMMS(t, dir)
	cs := v2.system(id)
	if cs.ElementName != name || cs.EnabledState != wmiapi.StateOff {
		t.Fatalf("after restart: %+v", cs)
	}
	// Graceful stop turns running partitions off and leaves no worker.
	if j := v2.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start after restart: %+v", j)
	}
	v2.stop()
	if w := workers(name); len(w) != 0 {
		t.Fatalf("workers after SIGTERM of the root: %v", w)
	}
}

// TestStateChangeStorm: 32 goroutines throw start, turn-off, pause and
// resume at two partitions. Every request gets 202 or 409 (never a 5xx or
// a torn state), and at the end each partition is in a stable state the
// worker agrees with.
func TestStateChangeStorm(t *testing.T) {
	requireGen1(t)
	v := startVMMS(t, t.TempDir())
	names := []string{unique("storm-a"), unique("storm-b")}
	for _, n := range names {
		img, _ := testguest.ConsoleDisk(t, t.TempDir())
		v.defineGen1(n, img)
	}
	states := []uint16{wmiapi.RequestRunning, wmiapi.RequestOff, wmiapi.RequestPaused, wmiapi.RequestRunning, wmiapi.RequestReset}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	var jobs []string
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 6; i++ {
				n := names[r.Intn(len(names))]
				if r.Intn(4) == 0 {
					// A settings change races the state changes: it is
					// taken only while the partition is Off and idle.
					status := v.callQuiet("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/ModifySystemSettings",
						wmiapi.ModifySystemSettingsRequest{SystemSettings: wmiapi.VirtualSystemSettingData{InstanceID: n, ElementName: n}})
					mu.Lock()
					codes[status]++
					mu.Unlock()
					continue
				}
				var res wmiapi.StateChangeResult
				status := v.call("POST", wmiapi.Prefix+"/Msvm_ComputerSystem/"+n+"/RequestStateChange",
					wmiapi.StateChangeRequest{RequestedState: states[r.Intn(len(states))]}, &res)
				mu.Lock()
				codes[status]++
				if status == 202 {
					jobs = append(jobs, res.Job.InstanceID)
				}
				mu.Unlock()
				time.Sleep(time.Duration(r.Intn(40)) * time.Millisecond)
			}
		}(g)
	}
	wg.Wait()
	for code := range codes {
		if code != 200 && code != 202 && code != 409 {
			t.Errorf("status %d in the storm (%v)", code, codes)
		}
	}
	for _, id := range jobs {
		j := v.waitJob(id, 60*time.Second)
		if j.JobState != wmiapi.JobCompleted && j.JobState != wmiapi.JobException {
			t.Errorf("job %s ended in state %d", id, j.JobState)
		}
	}
	t.Logf("statuses %v, %d jobs", codes, len(jobs))
	for _, n := range names {
		cs := v.system(n)
		w := workers(n)
		switch cs.EnabledState {
		case wmiapi.StateRunning, wmiapi.StatePaused:
			if len(w) != 1 || w[0] != cs.ProcessID {
				t.Errorf("%s is %d with workers %v, API pid %d", n, cs.EnabledState, w, cs.ProcessID)
			}
		case wmiapi.StateOff:
			if len(w) != 0 || cs.ProcessID != 0 {
				t.Errorf("%s is Off with workers %v, API pid %d", n, w, cs.ProcessID)
			}
		default:
			t.Errorf("%s left in transitional state %d", n, cs.EnabledState)
		}
	}
}

// TestDefinitionsSurviveRootKill: clients define and modify partitions
// while the root is killed with SIGKILL at random moments; after each
// restart every definition file parses and the service loads it.
func TestDefinitionsSurviveRootKill(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(t.TempDir(), "d.raw")
	if err := os.WriteFile(img, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	for round := 0; round < 4; round++ {
		v := startVMMS(t, dir)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("k%d-%d-%d", round, g, i)
					body := wmiapi.DefineSystemRequest{SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: name},
						ResourceSettings: []wmiapi.ResourceSettingData{{ResourceType: wmiapi.ResourceDisk, HostResource: []string{img}}}}
					if v.callQuiet("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem", body) != 201 {
						return // the root is gone
					}
					v.callQuiet("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/ModifySystemSettings",
						wmiapi.ModifySystemSettingsRequest{SystemSettings: wmiapi.VirtualSystemSettingData{InstanceID: name, ElementName: name + "-m"}})
				}
			}(g)
		}
		time.Sleep(time.Duration(50+r.Intn(200)) * time.Millisecond)
		v.cmd.Process.Kill()
		<-v.done
		close(stop)
		wg.Wait()
		files, _ := filepath.Glob(filepath.Join(dir, "partitions", "*"))
		for _, f := range files {
			if strings.HasSuffix(f, ".tmp") {
				continue // an interrupted write; the next start removes it
			}
			b, err := os.ReadFile(f)
			var d map[string]any
			if err != nil || json.Unmarshal(b, &d) != nil {
				t.Fatalf("round %d: %s is corrupt: %q", round, f, b)
			}
		}
		v2 := startVMMS(t, dir)
		var list []wmiapi.ComputerSystem
		v2.call("GET", wmiapi.Prefix+"/Msvm_ComputerSystem", nil, &list)
		n := 0
		for _, f := range files {
			if strings.HasSuffix(f, ".json") {
				n++
			}
		}
		if len(list) != n || strings.Contains(v2.log.String(), "definition not loaded") {
			t.Fatalf("round %d: %d files, %d partitions loaded; log:\n%s", round, n, len(list), v2.log.String())
		}
		t.Logf("round %d: %d definitions intact", round, n)
		v2.stop()
	}
}

// TestDiskRunsInOnePartition: two partitions defined on one image cannot
// run at once.
func TestDiskRunsInOnePartition(t *testing.T) {
	requireGen1(t)
	v := startVMMS(t, t.TempDir())
	img, _ := testguest.ConsoleDisk(t, t.TempDir())
	a, b := unique("disk-a"), unique("disk-b")
	v.defineGen1(a, img)
	v.defineGen1(b, img)
	if j := v.change(a, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start %s: %+v", a, j)
	}
	if status := v.call("POST", wmiapi.Prefix+"/Msvm_ComputerSystem/"+b+"/RequestStateChange", wmiapi.StateChangeRequest{RequestedState: 2}, nil); status != 409 {
		t.Fatalf("second partition on the same disk: %d, want 409", status)
	}
	if j := v.change(a, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", j)
	}
	if j := v.change(b, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start %s once the disk is free: %+v", b, j)
	}
}

// TestTurnOffOverridesShutDown: a shut down waiting for a guest that does
// not power off is overridden by a turn off; the shut down's job ends
// Killed.
func TestTurnOffOverridesShutDown(t *testing.T) {
	requireGen1(t)
	v := startVMMS(t, t.TempDir())
	img, _ := testguest.ConsoleDisk(t, t.TempDir())
	name := unique("override")
	v.defineGen1(name, img)
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start: %+v", j)
	}
	v.waitConsole(name, 90*time.Second, testguest.ConsoleToken)
	v.sendConsole(name, "#deaf\n") // listens for the button, never powers off
	v.waitConsole(name, 20*time.Second, "#DEAF")
	var res wmiapi.StateChangeResult
	if status := v.call("POST", wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/RequestStateChange", wmiapi.StateChangeRequest{RequestedState: wmiapi.RequestShutDown}, &res); status != 202 {
		t.Fatalf("shut down: %d", status)
	}
	time.Sleep(200 * time.Millisecond)
	if cs := v.system(name); cs.EnabledState != wmiapi.StateShuttingDown {
		t.Fatalf("while the shut down waits: %+v", cs)
	}
	if off := v.change(name, wmiapi.RequestOff); off.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", off)
	}
	if shut := v.waitJob(res.Job.InstanceID, 30*time.Second); shut.JobState != wmiapi.JobKilled {
		t.Fatalf("shut down job: %+v", shut)
	}
	if cs := v.system(name); cs.EnabledState != wmiapi.StateOff || cs.LastStopReason != "turned off" {
		t.Fatalf("after: %+v", cs)
	}
}

// TestNoStubOutlivesItsWorker: on ptrace a Generation 2 program runs as
// a stub process the worker traces; kill -9 of the worker leaves no stub
// running (PTRACE_O_EXITKILL and the stub's parent-death signal), its
// partition goes Off with the reason, and it starts again.
func TestNoStubOutlivesItsWorker(t *testing.T) {
	if testplatform.Gen2(t) != "ptrace" {
		t.Skip("the Generation 2 platform here is not ptrace: there is no stub")
	}
	v := startVMMS(t, t.TempDir(), "--accel", "ptrace")
	name := unique("stub")
	v.startHvguest(name)
	worker := v.system(name).ProcessID
	stubs := children(worker, "partita-stub")
	if len(stubs) != 1 {
		t.Fatalf("worker %d has stubs %v, want one", worker, stubs)
	}
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if cs := v.waitOff(name, 5*time.Second); !strings.Contains(cs.LastStopReason, "killed") {
		t.Errorf("after kill -9 of the worker: %+v", cs)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if !alive(stubs[0]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stub %d still runs 5 s after its worker was killed", stubs[0])
		}
	}
	if j := v.change(name, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start again: %+v", j)
	}
	v.waitConsole(name, 30*time.Second, "hvguest> ")
	if j := v.change(name, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off: %+v", j)
	}
}

// children lists the processes named comm whose parent is ppid.
func children(ppid int, comm string) []int {
	return processes(func(pid string) bool {
		status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
		return err == nil && strings.Contains(string(status), "Name:\t"+comm+"\n") &&
			strings.Contains(string(status), fmt.Sprintf("\nPPid:\t%d\n", ppid))
	})
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// TestResetLoopGen1: a guest that resets its machine over and over
// (every ~100 ms) is a power cycle each time, and is turned off on
// request within 100 ms even mid-loop; left alone, the root leaves it
// off after maxResets resets in a minute. A bystander partition runs on
// throughout.
func TestResetLoopGen1(t *testing.T) {
	requireGen1(t)
	v := startVMMS(t, t.TempDir())
	bystander := unique("bystander")
	img, _ := testguest.ConsoleDisk(t, t.TempDir())
	v.defineGen1(bystander, img)
	if j := v.change(bystander, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start %s: %+v", bystander, j)
	}
	looper := unique("looper")
	rom := testguest.AssembleToFile(t, testguest.WorkerROM("resetloop"), "0")
	if s := v.callQuiet("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem", wmiapi.DefineSystemRequest{
		SystemSettings:   wmiapi.VirtualSystemSettingData{ElementName: looper, FirmwareFile: rom},
		ResourceSettings: []wmiapi.ResourceSettingData{{ResourceType: wmiapi.ResourceMemory, VirtualQuantity: 16}}}); s != 201 {
		t.Fatalf("define %s: %d", looper, s)
	}

	// Turned off mid-loop: after its second power cycle.
	if j := v.change(looper, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start %s: %+v", looper, j)
	}
	pids := map[int]bool{}
	for deadline := time.Now().Add(30 * time.Second); len(pids) < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers in 30 s, want a third after two resets", len(pids))
		}
		if cs := v.system(looper); cs.ProcessID != 0 {
			pids[cs.ProcessID] = true
		}
	}
	asked := time.Now()
	if j := v.change(looper, wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("turn off mid-loop: %+v", j)
	}
	took := time.Since(asked)
	if cs := v.system(looper); cs.EnabledState != wmiapi.StateOff {
		t.Fatalf("after turn-off: %+v", cs)
	}
	t.Logf("turned off %v after the request, in its reset loop", took.Round(time.Millisecond))
	if took > 100*time.Millisecond {
		t.Errorf("turn-off took %v, want at most 100 ms", took)
	}

	// Left alone: off after maxResets resets, with the reason.
	if j := v.change(looper, wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
		t.Fatalf("start %s again: %+v", looper, j)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		cs := v.system(looper)
		if cs.EnabledState == wmiapi.StateOff {
			if !strings.Contains(cs.LastStopReason, "resets within") {
				t.Errorf("left off with reason %q", cs.LastStopReason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still resetting after 60 s: %+v", cs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cs := v.system(bystander); cs.EnabledState != wmiapi.StateRunning {
		t.Fatalf("bystander: %+v", cs)
	}
	v.sendConsole(bystander, "still there\n")
	v.waitConsole(bystander, 20*time.Second, "STILL THERE")
}
