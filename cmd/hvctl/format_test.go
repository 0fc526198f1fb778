package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	wmiapi "github.com/partita-hv/partita/wmi-api"
)

func TestWriteSystems(t *testing.T) {
	var b bytes.Buffer
	err := writeSystems(&b, []wmiapi.ComputerSystem{
		{ElementName: "web1", Name: "6F3A", EnabledState: wmiapi.StateRunning, Processors: 2, MemoryMB: 512,
			Generation: 1, OnTimeInMilliseconds: 3723_500, ProcessID: 4242, Platform: "kvm", StatusDescriptions: []string{"Operating normally"}},
		{ElementName: "build-server-2", EnabledState: wmiapi.StateOff, Processors: 16, MemoryMB: 4096,
			Generation: 2, Platform: "ptrace", StatusDescriptions: []string{"start failed: no\nplatform"}},
		{ElementName: "x", EnabledState: wmiapi.StatePaused, Processors: 1, MemoryMB: 64, Generation: 1,
			OnTimeInMilliseconds: 2*86400_000 + 5_000, ProcessID: 7},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME            STATE    CPU  MEMORY  GEN  PLATFORM  UPTIME      PID   STATUS\n" +
		"web1            Running  2    512M    1    kvm       01:02:03    4242  Operating normally\n" +
		"build-server-2  Off      16   4G      2    ptrace    00:00:00    -     start failed: no platform\n" +
		"x               Paused   1    64M     1    -         2.00:00:05  7     -\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	if err := writeSystems(&b, nil); err != nil {
		t.Fatal(err)
	}
	if b.String() != "NAME  STATE  CPU  MEMORY  GEN  PLATFORM  UPTIME  PID  STATUS\n" {
		t.Errorf("empty table: %q", b.String())
	}
}

func TestWriteJob(t *testing.T) {
	var b bytes.Buffer
	submitted := time.Date(2025, 3, 4, 5, 6, 7, 0, time.Local)
	err := writeJob(&b, wmiapi.ConcreteJob{InstanceID: "0B1C", Name: "RequestStateChange", JobState: wmiapi.JobException,
		PercentComplete: 100, ElapsedTimeMS: 1500, TimeSubmitted: submitted, ErrorDescription: "worker exited"})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID    NAME                STATE      PERCENT  ELAPSED  SUBMITTED            ERROR\n" +
		"0B1C  RequestStateChange  Exception  100%     1.5s     2025-03-04 05:06:07  worker exited\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestStateNames(t *testing.T) {
	for s, want := range map[uint16]string{
		wmiapi.StateUnknown: "Unknown", wmiapi.StateRunning: "Running", wmiapi.StateOff: "Off",
		wmiapi.StateShuttingDown: "ShuttingDown", wmiapi.StateSaved: "Saved", wmiapi.StatePaused: "Paused",
		wmiapi.StateStarting: "Starting", wmiapi.StateStopping: "Stopping", wmiapi.StatePausing: "Pausing",
		wmiapi.StateResuming: "Resuming", 7: "State(7)",
	} {
		if got := stateName(s); got != want {
			t.Errorf("stateName(%d) = %q, want %q", s, got, want)
		}
	}
	for s, want := range map[uint16]string{
		wmiapi.JobNew: "New", wmiapi.JobStarting: "Starting", wmiapi.JobRunning: "Running",
		wmiapi.JobCompleted: "Completed", wmiapi.JobKilled: "Killed", wmiapi.JobException: "Exception", 8: "JobState(8)",
	} {
		if got := jobStateName(s); got != want {
			t.Errorf("jobStateName(%d) = %q, want %q", s, got, want)
		}
	}
}

func TestMemoryAndUptimeStrings(t *testing.T) {
	for mb, want := range map[uint64]string{64: "64M", 1024: "1G", 1536: "1536M", 3072: "3G", 0: "0M"} {
		if got := memoryString(mb); got != want {
			t.Errorf("memoryString(%d) = %q, want %q", mb, got, want)
		}
	}
	for ms, want := range map[uint64]string{0: "00:00:00", 999: "00:00:00", 59_000: "00:00:59",
		86399_000: "23:59:59", 86400_000: "1.00:00:00", 100*86400_000 + 3600_000: "100.01:00:00"} {
		if got := uptimeString(ms); got != want {
			t.Errorf("uptimeString(%d) = %q, want %q", ms, got, want)
		}
	}
}

func TestDefineRequest(t *testing.T) {
	inv, err := parseArgs(strings.Fields("new-vm db --generation 2 --memory 2G --processors 3 --guest /g/kernel.elf --disk /d/a.raw --switch ext"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(inv.defineRequest())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"SystemSettings":{"ElementName":"db","VirtualSystemSubType":"Microsoft:Hyper-V:SubType:2","GuestFile":"/g/kernel.elf"},` +
		`"ResourceSettings":[` +
		`{"ClassName":"Msvm_ProcessorSettingData","ResourceType":3,"ResourceSubType":"Microsoft:Hyper-V:Processor","VirtualQuantity":3},` +
		`{"ClassName":"Msvm_MemorySettingData","ResourceType":4,"ResourceSubType":"Microsoft:Hyper-V:Memory","VirtualQuantity":2048,"AllocationUnits":"byte * 2^20"},` +
		`{"ClassName":"Msvm_StorageAllocationSettingData","ResourceType":31,"ResourceSubType":"Microsoft:Hyper-V:Virtual Hard Disk","HostResource":["/d/a.raw"]},` +
		`{"ClassName":"Msvm_EthernetPortAllocationSettingData","ResourceType":33,"ResourceSubType":"Microsoft:Hyper-V:Ethernet Connection","HostResource":["ext"]}]}`
	if string(got) != want {
		t.Errorf("request:\n%s\nwant:\n%s", got, want)
	}
}
