package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args string
		want invocation
	}{
		{"get-vm", invocation{verb: "get-vm", output: "table"}},
		{"get-vm web1 -o json", invocation{verb: "get-vm", name: "web1", output: "json"}},
		{"--server unix:/run/vmms.sock -o json get-vm", invocation{verb: "get-vm", server: "unix:/run/vmms.sock", output: "json"}},
		{"get-vm --server=h:1 --state-dir /s web1", invocation{verb: "get-vm", name: "web1", server: "h:1", stateDir: "/s", output: "table"}},
		{"--state-dir /a get-vm --state-dir /b", invocation{verb: "get-vm", stateDir: "/b", output: "table"}},
		{"start-vm web1", invocation{verb: "start-vm", name: "web1", output: "table"}},
		{"stop-vm --turn-off web1", invocation{verb: "stop-vm", name: "web1", turnOff: true, output: "table"}},
		{"stop-vm web1", invocation{verb: "stop-vm", name: "web1", output: "table"}},
		{"get-vmconsole web1 --follow", invocation{verb: "get-vmconsole", name: "web1", follow: true, output: "table"}},
		{"get-job -- -odd-id", invocation{verb: "get-job", name: "-odd-id", output: "table"}},
		{"get-vmintegrationservice g2 -o json", invocation{verb: "get-vmintegrationservice", name: "g2", output: "json"}},
		{"get-vmkvp g2", invocation{verb: "get-vmkvp", name: "g2", output: "table"}},
		{"set-vmkvp g2 --item Site=lab --item Empty=", invocation{verb: "set-vmkvp", name: "g2", output: "table", items: []string{"Site=lab", "Empty="}}},
		{"remove-vmkvp --key Site g2 --key Rack", invocation{verb: "remove-vmkvp", name: "g2", output: "table", keys: []string{"Site", "Rack"}}},
		{"new-vm web1 --generation 1", invocation{verb: "new-vm", name: "web1", output: "table",
			generation: 1, memoryMB: 64, processors: 1}},
		{"new-vm --generation=2 web2 --memory 1G --processors 4 --guest g.elf --disk /d/a.raw --disk b.raw --switch sw0 --switch sw1",
			invocation{verb: "new-vm", name: "web2", output: "table", generation: 2, memoryMB: 1024, processors: 4,
				guest: filepath.Join(wd, "g.elf"), disks: []string{"/d/a.raw", filepath.Join(wd, "b.raw")}, switches: []string{"sw0", "sw1"}}},
		{"new-vm old --generation 1 --firmware ./rom/../bios.bin --memory 512MiB", invocation{verb: "new-vm", name: "old", output: "table",
			generation: 1, memoryMB: 512, processors: 1, firmware: filepath.Join(wd, "bios.bin")}},
	} {
		got, err := parseArgs(strings.Fields(tc.args))
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.args, *got, tc.want)
		}
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, tc := range []struct{ args, msg string }{
		{"", "no verb"},
		{"-o json", "no verb"},
		{"list-vms", `unknown verb "list-vms"`},
		{"--follow get-vmconsole web1", "unknown flag --follow"},
		{"start-vm web1 --follow", "unknown flag --follow"},
		{"get-vmkvp g2 --item a=b", "unknown flag --item"},
		{"set-vmkvp", "set-vmkvp takes 1 operand, got 0"},
		{"set-vmkvp g2", "set-vmkvp needs --item KEY=VALUE"},
		{"set-vmkvp g2 --item novalue", `--item "novalue": want KEY=VALUE`},
		{"set-vmkvp g2 --item =v", `--item "=v": want KEY=VALUE`},
		{"remove-vmkvp g2", "remove-vmkvp needs --key KEY"},
		{"start-vm", "start-vm takes 1 operand, got 0"},
		{"start-vm a b", "start-vm takes 1 operand, got 2"},
		{"get-vm a b", "get-vm takes at most 1 operand"},
		{"get-vm -o yaml", `-o "yaml": want table or json`},
		{"get-vm --server", "flag --server needs a value"},
		{"new-vm web1", "new-vm needs --generation 1 or 2"},
		{"new-vm web1 --generation 3", "--generation 3: want 1 or 2"},
		{"new-vm web1 --generation two", `invalid value "two" for flag --generation`},
		{"new-vm web1 --generation 1 --memory 1000K", `--memory "1000K": not a whole number of MiB`},
		{"new-vm web1 --generation 1 --processors 0", "--processors 0: want at least 1"},
		{"new-vm web1 --generation 1 --switch=", "empty switch name"},
	} {
		_, err := parseArgs(strings.Fields(tc.args))
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: error %v, want a usage error", tc.args, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %q, want it to say %q", tc.args, err, tc.msg)
		}
	}
	for _, args := range []string{"help", "-h", "--help", "get-vm --help", "new-vm web1 -h"} {
		if _, err := parseArgs(strings.Fields(args)); !errors.Is(err, errHelp) {
			t.Errorf("%q: error %v, want errHelp", args, err)
		}
	}
}

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in string
		mb uint64
	}{
		{"64M", 64}, {"64m", 64}, {"64MB", 64}, {"64MiB", 64}, {"512M", 512},
		{"1G", 1024}, {"1GiB", 1024}, {"3g", 3072}, {"2T", 2 << 20},
		{"1024K", 1}, {"65536k", 64}, {"1048576", 1}, {"2097152B", 2},
	} {
		mb, err := parseMemory(tc.in)
		if err != nil || mb != tc.mb {
			t.Errorf("parseMemory(%q) = %d, %v; want %d", tc.in, mb, err, tc.mb)
		}
	}
	for _, bad := range []string{"", "M", "0", "0M", "-1M", "1.5G", "64 M", "1000K", "1000000",
		"64X", "64iB", "64KK", "99999999999999999999", "17179869184T"} {
		if mb, err := parseMemory(bad); err == nil {
			t.Errorf("parseMemory(%q) = %d, want an error", bad, mb)
		}
	}
}
