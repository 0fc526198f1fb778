package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/partita-hv/partita/root"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// The demo's partitions.
const (
	demoGen1 = "demo-gen1"
	demoGen2 = "demo-gen2"
	seabios  = "/usr/share/seabios/bios.bin"
)

// waitJob waits for a state change to end (at most a minute).
func waitJob(svc *root.Service, job wmiapi.ConcreteJob) (wmiapi.ConcreteJob, error) {
	deadline := time.Now().Add(time.Minute)
	for job.JobState == wmiapi.JobNew || job.JobState == wmiapi.JobStarting || job.JobState == wmiapi.JobRunning {
		if time.Now().After(deadline) {
			return job, fmt.Errorf("job %s still running after a minute", job.InstanceID)
		}
		time.Sleep(20 * time.Millisecond)
		var err error
		if job, err = svc.GetJob(job.InstanceID); err != nil {
			return job, err
		}
	}
	return job, nil
}

// demo defines (if need be) and starts a Generation 1 partition booting
// SeaBIOS and a Generation 2 partition running hvguest, and says how to
// reach their consoles. What it cannot start it reports and skips.
func demo(svc *root.Service, hvctl string, say func(string)) {
	type part struct {
		name, what, try string
		def             wmiapi.DefineSystemRequest
		need            string
	}
	mem := func(mb uint64) []wmiapi.ResourceSettingData {
		return []wmiapi.ResourceSettingData{{ResourceType: wmiapi.ResourceMemory, VirtualQuantity: mb}}
	}
	parts := []part{
		{demoGen1, "Generation 1: a diskless PC booting SeaBIOS", "SeaBIOS's banner, then its search for a boot disk",
			wmiapi.DefineSystemRequest{SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: demoGen1, FirmwareFile: seabios}, ResourceSettings: mem(64)},
			seabios},
		{demoGen2, "Generation 2: hvguest over VMBus", "type help, devices, kvp or date",
			wmiapi.DefineSystemRequest{SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: demoGen2, VirtualSystemSubType: wmiapi.SubTypeGen2}, ResourceSettings: mem(64)},
			""},
	}
	for _, p := range parts {
		if p.need != "" {
			if _, err := os.Stat(p.need); err != nil {
				say(fmt.Sprintf("demo: %s skipped: %v (apt-get install seabios)", p.name, err))
				continue
			}
		}
		var nf *wmiapi.Fault
		if _, err := svc.GetSystem(p.name); errors.As(err, &nf) && nf.Code == wmiapi.CodeNotFound {
			if _, err := svc.DefineSystem(p.def); err != nil {
				say(fmt.Sprintf("demo: define %s: %v", p.name, err))
				continue
			}
		}
		if cs, err := svc.GetSystem(p.name); err == nil && cs.EnabledState == wmiapi.StateOff {
			job, err := svc.RequestStateChange(p.name, wmiapi.RequestRunning)
			if err == nil {
				job, err = waitJob(svc, job)
			}
			if err != nil {
				say(fmt.Sprintf("demo: start %s: %v", p.name, err))
				continue
			}
			if job.JobState != wmiapi.JobCompleted {
				say(fmt.Sprintf("demo: %s (%s) did not start: %s", p.name, p.what, job.ErrorDescription))
				continue
			}
		}
		platform := ""
		if cs, err := svc.GetSystem(p.name); err == nil && cs.Platform != "" {
			platform = " on " + cs.Platform
		}
		say(fmt.Sprintf("demo: %s (%s%s): %s get-vmconsole %s for its output so far, %s console %s to attach (%s; Ctrl-] detaches)",
			p.name, p.what, platform, hvctl, p.name, hvctl, p.name, p.try))
	}
}
