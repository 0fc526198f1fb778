// Command hvguest is Partita's default Generation 2 guest: a static Go
// program that runs inside the partition, connects VMBus through the
// enlightened ABI (package vsc/hv), opens the synthetic console, prints a
// banner naming the VMBus version and the devices it was offered, and
// runs a small shell on the console.
//
// vmms runs it for a Generation 2 partition defined without a guest file
// when the binary sits beside vmms. Build it with
//
//	CGO_ENABLED=0 go build -o "$(dirname "$(command -v vmms)")/hvguest" ./cmd/hvguest
//
// Until the console is open, messages go to the debug console (the
// program's standard output, which the root also shows as the console).
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vsc"
	"github.com/partita-hv/partita/vsc/console"
	"github.com/partita-hv/partita/vsc/hv"
)

// ringPages is the guest memory taken for channel rings.
const ringPages = 256

func main() {
	start := time.Now()
	g, err := connect()
	if err != nil {
		fmt.Println("hvguest:", err)
		os.Exit(1)
	}
	g.start = start
	problems := g.startServices()
	g.banner()
	for _, p := range problems {
		g.printf("integration service %s\r\n", p)
	}
	g.prompt()
	shell := make(chan int, 1)
	go func() { shell <- g.shell() }()
	code := 0
	select {
	case code = <-shell:
	case req := <-g.ic.shutdown:
		g.printf("\r\nshutdown requested by the host")
		if req.Message != "" {
			g.printf(": %s", req.Message)
		}
		g.printf("\r\n")
		g.flush()
	}
	g.client.Disconnect()
	os.Exit(code)
}

// guest is hvguest's state.
type guest struct {
	start   time.Time
	t       *hv.Transport
	client  *client.Client
	console *console.Console
	out     *bufio.Writer
	ic      *services

	outMu sync.Mutex // out is shared by the shell and the shutdown notice
}

func connect() (*guest, error) {
	t, err := hv.Dial()
	if err != nil {
		return nil, err
	}
	pages, err := t.Pages(ringPages)
	if err != nil {
		return nil, err
	}
	c, err := client.Connect(t, client.Config{Pages: pages})
	if err != nil {
		return nil, fmt.Errorf("connect VMBus: %w", err)
	}
	k, err := console.Open(c)
	if err != nil {
		return nil, err
	}
	return &guest{t: t, client: c, console: k, out: bufio.NewWriter(k)}, nil
}

func (g *guest) printf(format string, args ...any) {
	g.outMu.Lock()
	fmt.Fprintf(g.out, format, args...)
	g.outMu.Unlock()
}

func (g *guest) flush() {
	g.outMu.Lock()
	g.out.Flush()
	g.outMu.Unlock()
}

func (g *guest) banner() {
	g.printf("\r\nPartita hvguest: VMBus %v, %d devices: %s\r\n", g.client.Version(), len(g.client.Offers()), strings.Join(g.deviceNames(), ", "))
	g.printf("Type help for commands.\r\n")
	g.flush()
}

func (g *guest) deviceNames() []string {
	var names []string
	for _, o := range g.client.Offers() {
		n := vsc.DeviceName(o.InterfaceType)
		if n == "" {
			n = o.InterfaceType.String()
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// command is one of the shell's.
type command struct {
	help string
	run  func(g *guest, args []string) (exit bool)
}

// commands are the shell's, by name (filled by init: help lists them).
var commands map[string]command

func init() {
	commands = map[string]command{
		"help":     {"list the commands", (*guest).help},
		"devices":  {"list the VMBus devices offered", (*guest).devices},
		"uptime":   {"time since hvguest started", (*guest).uptime},
		"echo":     {"print the arguments", (*guest).echo},
		"shutdown": {"end the partition (power off)", func(*guest, []string) bool { return true }},
		"date":     {"the host's time, as time sync last said", (*guest).date},
		"kvp":      {"list key-value pairs; kvp set NAME VALUE adds a guest item", (*guest).kvp},
	}
}

func (g *guest) help([]string) bool {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g.printf("  %-9s %s\r\n", n, commands[n].help)
	}
	return false
}

func (g *guest) devices([]string) bool {
	for _, o := range g.client.Offers() {
		name := vsc.DeviceName(o.InterfaceType)
		if name == "" {
			name = "unknown"
		}
		g.printf("  relid %-3d %-26s type %v instance %v\r\n", o.ChildRelID, name, o.InterfaceType, o.InterfaceInstance)
	}
	return false
}

func (g *guest) uptime([]string) bool {
	g.printf("up %v\r\n", time.Since(g.start).Round(time.Millisecond))
	return false
}

func (g *guest) echo(args []string) bool {
	g.printf("%s\r\n", strings.Join(args, " "))
	return false
}

func (g *guest) date([]string) bool {
	t, ok := g.ic.now()
	if !ok {
		g.printf("no time from the host yet\r\n")
		return false
	}
	g.printf("%s\r\n", t.UTC().Format(time.RFC1123))
	return false
}

func (g *guest) kvp(args []string) bool {
	s := g.ic
	if len(args) >= 3 && args[0] == "set" {
		s.mu.Lock()
		s.guestItems[args[1]] = strings.Join(args[2:], " ")
		s.mu.Unlock()
		return false
	}
	if len(args) > 0 {
		g.printf("usage: kvp [set NAME VALUE]\r\n")
		return false
	}
	s.mu.Lock()
	host, mine := sorted(s.hostItems), sorted(s.guestItems)
	s.mu.Unlock()
	for _, it := range host {
		g.printf("  host  %s = %s\r\n", it[0], it[1])
	}
	for _, it := range mine {
		g.printf("  guest %s = %s\r\n", it[0], it[1])
	}
	for _, it := range intrinsic() {
		g.printf("  auto  %s = %s\r\n", it[0], it[1])
	}
	return false
}

// shell reads lines from the console, echoing what is typed, and runs
// them until shutdown (exit status 0) or the console ends (1).
func (g *guest) shell() int {
	in := bufio.NewReader(g.console)
	var line []byte
	for {
		c, err := in.ReadByte()
		if err == io.EOF {
			return 1
		}
		if err != nil {
			return 1
		}
		switch c {
		case '\r', '\n':
			g.printf("\r\n")
			fields := strings.Fields(string(line))
			line = line[:0]
			if len(fields) > 0 {
				cmd, ok := commands[fields[0]]
				if !ok {
					g.printf("%s: unknown command (try help)\r\n", fields[0])
				} else if cmd.run(g, fields[1:]) {
					g.printf("shutting down\r\n")
					g.flush()
					return 0
				}
			}
			g.prompt()
		case 0x7F, 0x08: // backspace
			if len(line) > 0 {
				line = line[:len(line)-1]
				g.printf("\b \b")
			}
		default:
			if c >= 0x20 && len(line) < 1024 {
				line = append(line, c)
				g.printf("%c", c)
			}
		}
		if in.Buffered() == 0 {
			g.flush()
		}
	}
}

func (g *guest) prompt() {
	g.printf("hvguest> ")
	g.flush()
}
