package root

import (
	"context"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/partita-hv/partita/partition/control"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// metrics are the root's Prometheus series. Per-partition labels are
// bounded by the partition limit (maxPartitions); a destroyed partition's
// series are deleted.
type metrics struct {
	s             *Service
	workerStarts  prometheus.Counter
	workerExits   *prometheus.CounterVec // by kind
	workerCrashes prometheus.Counter
	consoleOut    *prometheus.CounterVec // by partition
	consoleIn     *prometheus.CounterVec
	partitions    *prometheus.Desc // by state, gathered
	platforms     *prometheus.Desc // by generation, platform: what each generation runs on here
	exits         *prometheus.Desc // by partition, platform, reason, gathered from the workers
	memory        *prometheus.Desc // by partition, platform
	unserved      *prometheus.Desc // by partition, syscall number
	vmbus         *prometheus.Desc // by partition, event: a Generation 2 partition's VMBus server counters
}

func newMetrics(s *Service) *metrics {
	return &metrics{
		s: s,
		workerStarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "partita_worker_starts_total",
			Help: "Worker processes started."}),
		workerExits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "partita_worker_exits_total",
			Help: "Worker processes that ended, by how: powered_off, turned_off, guest_reset, guest_failure, crashed, start_failed."}, []string{"kind"}),
		workerCrashes: prometheus.NewCounter(prometheus.CounterOpts{Name: "partita_worker_crashes_total",
			Help: "Worker processes that died without reporting (killed, crashed)."}),
		consoleOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "partita_console_output_bytes_total",
			Help: "Bytes the guest wrote to its console (COM1)."}, []string{"partition"}),
		consoleIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "partita_console_input_bytes_total",
			Help: "Bytes sent to the guest's console (COM1) through the API."}, []string{"partition"}),
		partitions: prometheus.NewDesc("partita_partitions", "Partitions, by state.", []string{"state"}, nil),
		platforms: prometheus.NewDesc("partita_platform_info", "The platform each generation of partition runs on here (none: no platform can run it), chosen at start with --accel.",
			[]string{"generation", "platform"}, nil),
		exits: prometheus.NewDesc("partita_vcpu_exits_total", "Virtual processor exits to the worker, by partition, platform and exit reason (since the partition last started).",
			[]string{"partition", "platform", "reason"}, nil),
		memory: prometheus.NewDesc("partita_guest_memory_bytes", "Guest memory of running partitions, by partition and platform.", []string{"partition", "platform"}, nil),
		unserved: prometheus.NewDesc("partita_guest_unserved_syscalls_total", "System calls of Generation 2 programs that got ENOSYS, by partition and system call number (since the partition last started).",
			[]string{"partition", "syscall"}, nil),
		vmbus: prometheus.NewDesc("partita_vmbus_events_total", "A Generation 2 partition's VMBus host, by event: messages from the guest, protocol_errors (messages dropped), channel_failures (channels closed for a fault), channels_opened, gpadls_created, device_faults (guest protocol violations the devices saw), and the rings' traffic: packets_from_guest and packets_to_guest (read and written by the devices), interrupts_to_guest, guest_wakeups (the guest's doorbells, several of which can make one wake-up). Since the partition last started.",
			[]string{"partition", "event"}, nil),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.workerStarts, m.workerExits, m.workerCrashes, m.consoleOut, m.consoleIn, m} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	// Make the exit kinds visible before the first exit.
	for _, k := range []string{"powered_off", "turned_off", "guest_reset", "guest_failure", "crashed", "start_failed"} {
		m.workerExits.WithLabelValues(k)
	}
	return nil
}

// forget deletes a partition's series.
func (m *metrics) forget(name string) {
	m.consoleOut.DeleteLabelValues(name)
	m.consoleIn.DeleteLabelValues(name)
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.partitions
	ch <- m.platforms
	ch <- m.exits
	ch <- m.memory
	ch <- m.unserved
	ch <- m.vmbus
}

// statsTimeout bounds how long a scrape waits for one worker's counters.
const statsTimeout = 500 * time.Millisecond

// Collect implements prometheus.Collector: partition states from the
// registry, and counters asked of every running worker.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.s
	type running struct {
		name, platform string
		w              *worker
	}
	var rs []running
	counts := map[uint16]int{}
	s.mu.Lock()
	for _, p := range s.byID {
		counts[p.state]++
		if p.worker != nil {
			rs = append(rs, running{p.def.Name, p.worker.platform, p.worker})
		}
	}
	s.mu.Unlock()
	for g := 1; g <= 2; g++ {
		name := s.platformName(g)
		if name == "" {
			name = "none"
		}
		ch <- prometheus.MustNewConstMetric(m.platforms, prometheus.GaugeValue, 1, strconv.Itoa(g), name)
	}
	for _, st := range []uint16{wmiapi.StateRunning, wmiapi.StateOff, wmiapi.StatePaused, wmiapi.StateSaved, wmiapi.StateStarting,
		wmiapi.StateStopping, wmiapi.StateShuttingDown, wmiapi.StatePausing, wmiapi.StateResuming} {
		ch <- prometheus.MustNewConstMetric(m.partitions, prometheus.GaugeValue, float64(counts[st]), stateName(st))
	}
	// Ask the workers at once: one that does not answer costs the scrape
	// statsTimeout, not statsTimeout per worker.
	var wg sync.WaitGroup
	for _, r := range rs {
		ch <- prometheus.MustNewConstMetric(m.memory, prometheus.GaugeValue, float64(r.w.mem.Size()), r.name, r.platform)
		if b := r.w.busOf(); b != nil {
			for event, n := range b.stats() {
				ch <- prometheus.MustNewConstMetric(m.vmbus, prometheus.CounterValue, float64(n), r.name, event)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
			reply, err := r.w.request(ctx, &control.Message{Type: control.TypeStats})
			cancel()
			if err != nil || reply.Stats == nil {
				return
			}
			n := 0
			for reason, count := range reply.Stats.Exits {
				// Keep labels bounded whatever a worker says.
				if n++; n > maxExitReasons || len(reason) > 32 || !validLabel(reason) {
					continue
				}
				ch <- prometheus.MustNewConstMetric(m.exits, prometheus.CounterValue, float64(count), r.name, r.platform, reason)
			}
			n = 0
			for nr, count := range reply.Stats.Unserved {
				if n++; n > maxExitReasons || !validSyscallNumber(nr) {
					continue
				}
				ch <- prometheus.MustNewConstMetric(m.unserved, prometheus.CounterValue, float64(count), r.name, nr)
			}
		}()
	}
	wg.Wait()
}

// maxExitReasons bounds the exit-reason series of one partition (KVM has
// about 40 exit reasons).
const maxExitReasons = 64

// validLabel accepts the lower-case names the worker gives exit reasons.
func validLabel(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '(' || c == ')') {
			return false
		}
	}
	return s != ""
}

// validSyscallNumber accepts what the worker gives as a system call
// number: a decimal below 1024, or "other".
func validSyscallNumber(s string) bool {
	if s == "other" {
		return true
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n < 1024 && strconv.Itoa(n) == s
}

// countingWriter counts bytes into a counter on their way to w.
type countingWriter struct {
	w io.Writer
	n prometheus.Counter
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n.Add(float64(len(p)))
	return c.w.Write(p)
}
