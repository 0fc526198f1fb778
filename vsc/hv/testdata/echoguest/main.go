// Command echoguest is a Generation 2 test guest: it connects VMBus from
// inside its partition, opens the echo device and streams packets to it.
//
//	echoguest COUNT [completions] [fixed SIZE] [pages N] [spin DURATION]
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/partita-hv/partita/vmbus/client"
	"github.com/partita-hv/partita/vmbus/echo"
	"github.com/partita-hv/partita/vmbus/ring"
	"github.com/partita-hv/partita/vsc/hv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Println("echoguest:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: echoguest COUNT [completions] [fixed SIZE]")
	}
	count, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	var opt echo.Options
	sizes := echo.Mixed
	ringPages := 16
	var spin time.Duration
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "pages", "spin":
			i++
			if i == len(args) {
				return fmt.Errorf("%s needs a value", args[i-1])
			}
			var err error
			if args[i-1] == "pages" {
				ringPages, err = strconv.Atoi(args[i])
			} else {
				spin, err = time.ParseDuration(args[i])
			}
			if err != nil {
				return err
			}
		case "completions":
			opt.Completions = true
		case "fixed":
			i++
			if i == len(args) {
				return fmt.Errorf("fixed needs a size")
			}
			n, err := strconv.Atoi(args[i])
			if err != nil {
				return err
			}
			sizes = echo.Fixed(n)
		}
	}
	t, err := hv.Dial()
	if err != nil {
		return err
	}
	pages, err := t.Pages(2*ringPages + 8)
	if err != nil {
		return err
	}
	c, err := client.Connect(t, client.Config{Pages: pages, Endpoint: ring.EndpointConfig{Spin: spin}})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	fmt.Printf("vmbus %v, %d offers\n", c.Version(), len(c.Offers()))
	res, err := echo.RunGuest(c, ringPages, count, sizes, opt)
	if err != nil {
		return err
	}
	fmt.Printf("echo ok: %d packets in %v; signals %d, wakeups %d, send blocked %d; sint wakeups %d\n",
		res.Packets, res.Elapsed, res.Stats.SignalsSent, res.Stats.Wakeups, res.Stats.SendBlocked, t.Wakeups.Load())
	return c.Disconnect()
}
