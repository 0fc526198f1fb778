package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// stateName is an EnabledState in words, as Hyper-V's Get-VM shows it.
func stateName(s uint16) string {
	switch s {
	case wmiapi.StateUnknown:
		return "Unknown"
	case wmiapi.StateRunning:
		return "Running"
	case wmiapi.StateOff:
		return "Off"
	case wmiapi.StateShuttingDown:
		return "ShuttingDown"
	case wmiapi.StateSaved:
		return "Saved"
	case wmiapi.StatePaused:
		return "Paused"
	case wmiapi.StateStarting:
		return "Starting"
	case wmiapi.StateStopping:
		return "Stopping"
	case wmiapi.StatePausing:
		return "Pausing"
	case wmiapi.StateResuming:
		return "Resuming"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// jobStateName is a JobState in words.
func jobStateName(s uint16) string {
	switch s {
	case wmiapi.JobNew:
		return "New"
	case wmiapi.JobStarting:
		return "Starting"
	case wmiapi.JobRunning:
		return "Running"
	case wmiapi.JobCompleted:
		return "Completed"
	case wmiapi.JobKilled:
		return "Killed"
	case wmiapi.JobException:
		return "Exception"
	}
	return "JobState(" + strconv.Itoa(int(s)) + ")"
}

// memoryString is a size in MiB as 512M or, when whole, 2G.
func memoryString(mb uint64) string {
	if mb >= 1024 && mb%1024 == 0 {
		return strconv.FormatUint(mb/1024, 10) + "G"
	}
	return strconv.FormatUint(mb, 10) + "M"
}

// uptimeString is a duration as Hyper-V shows Uptime: [d.]hh:mm:ss.
func uptimeString(ms uint64) string {
	s := ms / 1000
	hms := fmt.Sprintf("%02d:%02d:%02d", s/3600%24, s/60%60, s%60)
	if d := s / 86400; d > 0 {
		return strconv.FormatUint(d, 10) + "." + hms
	}
	return hms
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// writeSystems renders partitions as get-vm's table; STATUS is Hyper-V's
// Status column (the first status description: "Operating normally", or
// why the partition is not).
func writeSystems(w io.Writer, systems []wmiapi.ComputerSystem) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tSTATE\tCPU\tMEMORY\tGEN\tPLATFORM\tUPTIME\tPID\tSTATUS")
	for _, s := range systems {
		pid, platform, status := "-", "-", "-"
		if s.ProcessID != 0 {
			pid = strconv.Itoa(s.ProcessID)
		}
		if s.Platform != "" {
			platform = s.Platform
		}
		if len(s.StatusDescriptions) > 0 && s.StatusDescriptions[0] != "" {
			status = oneLine(s.StatusDescriptions[0])
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", s.ElementName, stateName(s.EnabledState),
			s.Processors, memoryString(s.MemoryMB), s.Generation, platform, uptimeString(s.OnTimeInMilliseconds), pid, status)
	}
	return tw.Flush()
}

// oneLine keeps a table row on one line: line breaks and tabs become
// spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}

// writeJob renders a job as get-job's table.
func writeJob(w io.Writer, j wmiapi.ConcreteJob) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tPERCENT\tELAPSED\tSUBMITTED\tERROR")
	errText := "-"
	if j.ErrorDescription != "" {
		errText = j.ErrorDescription
	}
	elapsed := (time.Duration(j.ElapsedTimeMS) * time.Millisecond).String()
	fmt.Fprintf(tw, "%s\t%s\t%s\t%d%%\t%s\t%s\t%s\n", j.InstanceID, j.Name, jobStateName(j.JobState),
		j.PercentComplete, elapsed, j.TimeSubmitted.Local().Format(time.DateTime), errText)
	return tw.Flush()
}

// writeJSON writes v indented, for scripts.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeHeartbeat shows the heartbeat integration service's state.
func writeHeartbeat(w io.Writer, h wmiapi.HeartbeatComponent) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tSTATUS\tAPPLICATION")
	status, app := "-", "-"
	if len(h.StatusDescriptions) > 0 {
		status = h.StatusDescriptions[0]
	}
	if len(h.StatusDescriptions) > 1 {
		app = h.StatusDescriptions[1]
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\n", h.ElementName, status, app)
	return tw.Flush()
}

// writeKVP lists key-value pairs by where they come from.
func writeKVP(w io.Writer, k wmiapi.KvpExchangeComponent) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "SOURCE\tNAME\tDATA")
	for _, g := range []struct {
		source string
		items  []wmiapi.KvpExchangeDataItem
	}{{"host", k.HostExchangeItems}, {"guest", k.GuestExchangeItems}, {"intrinsic", k.GuestIntrinsicExchangeItems}} {
		for _, it := range g.items {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", g.source, it.Name, it.Data)
		}
	}
	return tw.Flush()
}
