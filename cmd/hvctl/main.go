// Command hvctl manages Partita partitions through vmms, the root
// service's REST API; its verbs follow Hyper-V's PowerShell cmdlets. Run
// hvctl --help for the usage.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	wmiapi "github.com/partita-hv/partita/wmi-api"
	"github.com/partita-hv/partita/wmi-api/client"
)

const usageText = `Usage: hvctl [global flags] VERB [OPERAND] [flags]

Manages Partita partitions through vmms, the root service. The verbs follow
Hyper-V's PowerShell cmdlets; NAME is a partition's name or GUID.

  new-vm NAME --generation 1|2 [--memory 64M] [--processors N]
         [--firmware PATH] [--guest PATH] [--disk PATH ...] [--switch NAME ...]
        Define a partition. --memory is a whole number of MiB, as in 64M,
        512M or 1G (default 64M); --processors defaults to 1. --firmware is
        a Generation 1 BIOS ROM (default: the service's SeaBIOS), --guest a
        Generation 2 static ELF (default: hvguest beside vmms). --disk (an
        image) and --switch (a virtual switch's name) repeat.
  get-vm [NAME]
        List the partitions, or show one.
  start-vm NAME
        Start a partition and wait until it runs.
  stop-vm NAME [--turn-off]
        Shut a partition down through its guest (Generation 1: the ACPI
        power button; Generation 2: the shutdown integration service) and
        wait until it is off; --turn-off turns it off at once.
  suspend-vm NAME
        Pause a running partition.
  resume-vm NAME
        Resume a paused partition.
  remove-vm NAME
        Delete a partition that is off.
  get-vmconsole NAME [--follow]
        Print the partition's COM1 output, from the oldest byte the service
        keeps; --follow goes on printing until the partition stops.
  console NAME
        Attach to a running partition's COM1: standard input goes to the
        guest, the guest's output to standard output. Ctrl-] or the end of
        the input detaches.
  get-job ID
        Show a job (state changes run as jobs).
  get-vmintegrationservice NAME
        Show a Generation 2 guest's heartbeat: OK, Lost Communication or
        No Contact, and the application state it reports.
  get-vmkvp NAME
        List the key-value pairs: the host's, and the guest's (read from
        the running guest).
  set-vmkvp NAME --item KEY=VALUE ...
        Add or replace host key-value pairs (kept with the partition; a
        running guest gets them at once). --item repeats.
  remove-vmkvp NAME --key KEY ...
        Remove host key-value pairs. --key repeats.

Global flags, before or after the verb:
  --server ADDR     the service: host:port, http://host:port or unix:/path
                    (default: $PARTITA_SERVER, else %s)
  --state-dir DIR   read the API token from DIR/api-token
  -o table|json     tables for people (default) or JSON for scripts; the
                    console verbs always write the guest's raw bytes

The API token is read from DIR/api-token when --state-dir is given, else
taken from $PARTITA_TOKEN, else read from %s.

Exit status: 0 on success; 1 on an error, reported on one line with the
service's error code; 2 on a usage error.
`

func usage() string {
	return fmt.Sprintf(usageText, wmiapi.DefaultListen, filepath.Join(wmiapi.DefaultStateDir(), wmiapi.TokenFile))
}

// env is what a run sees of the world.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// run is hvctl with args (no program name); it returns the exit status.
func run(ctx context.Context, args []string, e env) int {
	inv, err := parseArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(e.stdout, usage())
		return 0
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "hvctl: %v\n\n%s", err, usage())
		return 2
	}
	server := inv.server
	if server == "" {
		server = e.getenv(wmiapi.EnvServer)
	}
	if server == "" {
		server = wmiapi.DefaultListen
	}
	token, err := findToken(inv.stateDir, e.getenv)
	if err == nil {
		var c *client.Client
		if c, err = client.New(server, token); err == nil {
			err = (&cmd{invocation: inv, c: c, env: e}).run(ctx)
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "hvctl: %s\n", message(err, server))
		return 1
	}
	return 0
}

// findToken: DIR/api-token for an explicit --state-dir, else
// $PARTITA_TOKEN, else the default state directory's api-token.
func findToken(stateDir string, getenv func(string) string) (string, error) {
	if stateDir == "" {
		if t := getenv(wmiapi.EnvToken); t != "" {
			return t, nil
		}
		stateDir = wmiapi.DefaultStateDir()
	}
	path := filepath.Join(stateDir, wmiapi.TokenFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the API token: %v (set $%s or --state-dir)", err, wmiapi.EnvToken)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("the API token file %s is empty", path)
	}
	return t, nil
}

// message is an error as one line for stderr.
func message(err error, server string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Sprintf("cannot reach vmms at %s: %v", server, ue.Err)
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
