package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	wmiapi "github.com/partita-hv/partita/wmi-api"
	"github.com/partita-hv/partita/wmi-api/client"
)

// cmd is one run of a verb.
type cmd struct {
	*invocation
	c *client.Client
	env
}

func (x *cmd) run(ctx context.Context) error {
	switch x.verb {
	case "new-vm":
		return x.newVM(ctx)
	case "get-vm":
		return x.getVM(ctx)
	case "start-vm", "resume-vm":
		return x.changeState(ctx, wmiapi.RequestRunning)
	case "stop-vm":
		if x.turnOff {
			return x.changeState(ctx, wmiapi.RequestOff)
		}
		return x.changeState(ctx, wmiapi.RequestShutDown)
	case "suspend-vm":
		return x.changeState(ctx, wmiapi.RequestPaused)
	case "remove-vm":
		return x.c.DestroySystem(ctx, x.name)
	case "get-vmconsole":
		return x.getConsole(ctx)
	case "console":
		return x.attach(ctx)
	case "get-vmintegrationservice":
		h, err := x.c.Heartbeat(ctx, x.name)
		return x.show(h, err, func() error { return writeHeartbeat(x.stdout, h) })
	case "get-vmkvp":
		k, err := x.c.KvpExchange(ctx, x.name)
		return x.show(k, err, func() error { return writeKVP(x.stdout, k) })
	case "set-vmkvp":
		items := map[string]string{}
		for _, it := range x.items { // parseArgs checked their form
			k, v, _ := strings.Cut(it, "=")
			items[k] = v
		}
		return x.c.AddKvpItems(ctx, x.name, items)
	case "remove-vmkvp":
		return x.c.RemoveKvpItems(ctx, x.name, x.keys)
	case "get-job":
		j, err := x.c.GetJob(ctx, x.name)
		return x.show(j, err, func() error { return writeJob(x.stdout, j) })
	}
	return fmt.Errorf("verb %q is not implemented", x.verb)
}

// show prints what a verb fetched: as JSON with -o json, else as table
// does; err, the fetch's, comes first.
func (x *cmd) show(v any, err error, table func() error) error {
	if err != nil {
		return err
	}
	if x.output == "json" {
		return writeJSON(x.stdout, v)
	}
	return table()
}

// defineRequest is new-vm's DefineSystem input.
func (inv *invocation) defineRequest() wmiapi.DefineSystemRequest {
	sub := wmiapi.SubTypeGen1
	if inv.generation == 2 {
		sub = wmiapi.SubTypeGen2
	}
	req := wmiapi.DefineSystemRequest{
		SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: inv.name, VirtualSystemSubType: sub,
			FirmwareFile: inv.firmware, GuestFile: inv.guest},
		ResourceSettings: []wmiapi.ResourceSettingData{
			{ClassName: wmiapi.ClassProcessor, ResourceType: wmiapi.ResourceProcessor, ResourceSubType: wmiapi.SubTypeProcessor,
				VirtualQuantity: uint64(inv.processors)},
			{ClassName: wmiapi.ClassMemory, ResourceType: wmiapi.ResourceMemory, ResourceSubType: wmiapi.SubTypeMemory,
				VirtualQuantity: inv.memoryMB, AllocationUnits: "byte * 2^20"},
		},
	}
	for _, d := range inv.disks {
		req.ResourceSettings = append(req.ResourceSettings, wmiapi.ResourceSettingData{ClassName: wmiapi.ClassDisk,
			ResourceType: wmiapi.ResourceDisk, ResourceSubType: wmiapi.SubTypeDisk, HostResource: []string{d}})
	}
	for _, s := range inv.switches {
		req.ResourceSettings = append(req.ResourceSettings, wmiapi.ResourceSettingData{ClassName: wmiapi.ClassEthernet,
			ResourceType: wmiapi.ResourceEthernet, ResourceSubType: wmiapi.SubTypeEthernet, HostResource: []string{s}})
	}
	return req
}

func (x *cmd) newVM(ctx context.Context) error {
	res, err := x.c.DefineSystem(ctx, x.defineRequest())
	if err != nil {
		return err
	}
	if x.output == "json" {
		return writeJSON(x.stdout, res)
	}
	return writeSystems(x.stdout, []wmiapi.ComputerSystem{res.ResultingSystem})
}

func (x *cmd) getVM(ctx context.Context) error {
	if x.name != "" {
		s, err := x.c.GetSystem(ctx, x.name)
		if err != nil {
			return err
		}
		if x.output == "json" {
			return writeJSON(x.stdout, s)
		}
		return writeSystems(x.stdout, []wmiapi.ComputerSystem{s})
	}
	list, err := x.c.ListSystems(ctx)
	if err != nil {
		return err
	}
	if x.output == "json" {
		if list == nil {
			list = []wmiapi.ComputerSystem{}
		}
		return writeJSON(x.stdout, list)
	}
	return writeSystems(x.stdout, list)
}

// changeState requests a state, waits for the job and prints the
// partition as the job left it.
func (x *cmd) changeState(ctx context.Context, state uint16) error {
	j, err := x.c.RequestStateChange(ctx, x.name, state)
	if err != nil {
		return err
	}
	if !client.JobDone(j) {
		id := j.InstanceID
		if j, err = x.c.WaitJob(ctx, id); err != nil {
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("interrupted; job %s goes on (hvctl get-job %s)", id, id)
			}
			return err
		}
	}
	if j.JobState != wmiapi.JobCompleted {
		desc := j.ErrorDescription
		if desc == "" {
			desc = "no description"
		}
		return fmt.Errorf("%s %s: job %s ended in %s (error %d): %s", x.verb, x.name, j.InstanceID,
			jobStateName(j.JobState), j.ErrorCode, desc)
	}
	s, err := x.c.GetSystem(ctx, x.name)
	if err != nil {
		return err
	}
	if x.output == "json" {
		return writeJSON(x.stdout, s)
	}
	return writeSystems(x.stdout, []wmiapi.ComputerSystem{s})
}

// getConsole prints the console output kept from cursor 0; with --follow
// it goes on until the partition stops or hvctl is interrupted.
func (x *cmd) getConsole(ctx context.Context) error {
	var cursor uint64
	for {
		next, err := x.c.Console(ctx, x.name, cursor, x.follow, x.stdout)
		if x.follow {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		if err != nil {
			return err
		}
		// One GET returns at most what the service sends at once: ask
		// again until nothing more comes.
		if next == cursor {
			return nil
		}
		cursor = next
	}
}
