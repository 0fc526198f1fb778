// Command vmms is Partita's root partition service: it keeps the partition
// definitions, runs one worker process per running partition, and serves
// the WMI-style management API and Prometheus metrics.
//
//	vmms [--state-dir DIR] [--listen ADDR|unix:PATH] [--accel auto|kvm|ptrace] [--log-format text|json] [--log-level info] [--no-spare-worker] [--demo]
//
// --accel chooses what runs the partitions' processors: kvm (needs
// /dev/kvm), ptrace (Generation 2 programs, anywhere), or auto (the
// default): KVM where /dev/kvm opens, else the generation's software
// platform. The choice for each generation is logged at start.
//
// Every API route but /metrics and /healthz needs the bearer token in
// DIR/api-token (made at first start, mode 0600). On SIGINT or SIGTERM
// the service turns off the running partitions (their disks are flushed)
// and exits; a restarted service brings the definitions back, all Off.
//
// With --demo it also defines and starts a Generation 1 partition booting
// SeaBIOS and a Generation 2 partition running hvguest (which must sit
// beside vmms; ./run builds both) and prints how to reach their consoles.
//
// The same binary is the worker: run with argv[0] "vmwp", it is vmwp.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/partita-hv/partita/partition/accel"
	"github.com/partita-hv/partita/root"
	"github.com/partita-hv/partita/vmbus/host"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

func main() {
	if isWorker() {
		os.Exit(workerMain())
	}
	stateDir := flag.String("state-dir", wmiapi.DefaultStateDir(), "state directory: definitions, the API token, worker pid files")
	listen := flag.String("listen", wmiapi.DefaultListen, "API address: host:port, or unix:PATH")
	logFormat := flag.String("log-format", "text", "log format: text or json")
	logLevel := flag.String("log-level", "info", "log level: trace, debug, info, warn, error")
	noSpare := flag.Bool("no-spare-worker", false, "do not keep a worker process ready for the next start")
	demoMode := flag.Bool("demo", false, "define and start a Generation 1 (SeaBIOS) and a Generation 2 (hvguest) partition")
	vmbusPoll := flag.Duration("vmbus-poll", host.DefaultPoll, "how long VMBus devices poll a quiet channel before they sleep on its doorbell (0: not at all)")
	choice := flag.String("accel", accel.Auto, "the platform: "+strings.Join(accel.Choices, ", ")+" (auto: KVM where /dev/kvm opens, else each generation's software platform)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "vmms: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if err := run(*stateDir, *listen, *logFormat, *logLevel, *choice, *noSpare, *demoMode, *vmbusPoll); err != nil {
		fmt.Fprintln(os.Stderr, "vmms:", err)
		os.Exit(1)
	}
}

func run(stateDir, listen, logFormat, logLevel, choice string, noSpare, demoMode bool, vmbusPoll time.Duration) error {
	if err := accel.Check(choice); err != nil {
		return fmt.Errorf("--accel: %w", err)
	}
	if logFormat != "text" && logFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", logFormat)
	}
	level := hclog.LevelFromString(logLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", logLevel)
	}
	if vmbusPoll < 0 || vmbusPoll > 10*time.Millisecond {
		return fmt.Errorf("--vmbus-poll %v: want 0 to 10ms", vmbusPoll)
	}
	if vmbusPoll == 0 {
		vmbusPoll = -1 // root.Config: negative is "not at all"
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "vmms", Level: level, JSONFormat: logFormat == "json", Output: os.Stderr})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := root.New(root.Config{StateDir: stateDir, Logger: log, Registerer: reg, NoSpare: noSpare, VMBusPoll: vmbusPoll, Accel: choice})
	if err != nil {
		return err
	}
	handler, err := wmiapi.NewHandler(wmiapi.ServerConfig{Backend: svc, Token: svc.Token(), Logger: log.Named("api"),
		Registerer: reg, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})})
	if err != nil {
		return err
	}
	ln, err := listenOn(listen)
	if err != nil {
		svc.Close()
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving", "listen", ln.Addr().String(), "token_file", stateDir+"/"+wmiapi.TokenFile)
	// Tests and scripts read the address from this line on stdout.
	fmt.Printf("vmms: listening on %s\n", ln.Addr())

	var serveErr error
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if demoMode {
		hvctl := "hvctl"
		if exe, err := os.Executable(); err == nil {
			hvctl = filepath.Join(filepath.Dir(exe), "hvctl")
		}
		if !strings.HasPrefix(listen, "unix:") && listen != wmiapi.DefaultListen {
			hvctl += " --server http://" + ln.Addr().String()
		}
		if stateDir != wmiapi.DefaultStateDir() {
			hvctl += " --state-dir " + stateDir
		}
		demo(svc, hvctl, func(s string) { fmt.Println(s) })
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.Info("stopping", "signal", s.String())
	case err := <-errc:
		serveErr = fmt.Errorf("serving the API: %w", err)
		log.Error("server failed", "error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	return errors.Join(serveErr, svc.Close())
}

// listenOn opens host:port or unix:PATH (a stale socket file is replaced).
func listenOn(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(path, 0o600); err != nil {
			ln.Close()
			return nil, err
		}
		return ln, nil
	}
	return net.Listen("tcp", addr)
}
