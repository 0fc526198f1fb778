package root

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/partita-hv/partita/partition/accel"
	"github.com/partita-hv/partita/partition/control"

	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// Config configures the root service.
type Config struct {
	StateDir   string
	WorkerPath string // the binary run as each worker (argv[0] "vmwp"); default: this executable
	// DefaultGuest is the program a Generation 2 partition defined
	// without a GuestFile runs; default: hvguest beside WorkerPath.
	DefaultGuest    string
	Logger          hclog.Logger
	Registerer      prometheus.Registerer // where the service's metrics go; nil: none
	ShutdownTimeout time.Duration         // how long a guest gets to power off after the power button (default 30 s)
	NoSpare         bool                  // do not keep a spare worker process ready
	// VMBusPoll is how long the VMBus devices poll a quiet channel before
	// they sleep on its doorbell: 0 means host.DefaultPoll, a negative
	// value not at all.
	VMBusPoll time.Duration
	// Accel chooses the platform that runs partitions (package
	// partition/accel): auto (the default), kvm or ptrace.
	Accel string
}

// Service is the root partition service: the registry of partitions, their
// lifecycle and jobs, persistence and worker supervision.
type Service struct {
	cfg     Config
	log     hclog.Logger
	store   *store
	lock    *os.File // holds the state directory's flock
	metrics *metrics
	token   string
	ctx     context.Context // ends when the service closes
	cancel  context.CancelFunc

	mu     sync.Mutex
	cond   *sync.Cond // broadcast when a worker's end is recorded
	byID   map[string]*partition
	byName []*partition // byID's values by name; nil when it needs sorting again
	jobs   map[string]*job
	jobSeq []string // job ids, oldest first, for trimming
	closed bool
	jobsWG sync.WaitGroup

	spare          *worker // a worker waiting for a partition (see spare.go)
	spareLaunching bool

	// platforms is what cfg.Accel gives each generation here, found
	// once at start: a platform name, or why there is none.
	platforms [3]platformChoice
}

// platformChoice is the platform a generation gets, or why it gets none.
type platformChoice struct {
	name string
	err  error
}

// job is one Msvm_ConcreteJob; its fields are guarded by Service.mu.
type job struct {
	wmiapi.ConcreteJob
	done       chan struct{}
	cancel     context.CancelFunc // ends the job's work early
	superseded bool               // a turn off overrode it
}

// maxFinishedJobs is how many jobs the service remembers.
const maxFinishedJobs = 1000

// New opens the state directory, reloads the definitions in it (every
// partition comes back Off: the root does not reattach workers of an
// earlier run, and stops any it finds left over) and makes the API token
// if there is none.
func New(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.WorkerPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.WorkerPath = exe
	}
	if cfg.DefaultGuest == "" {
		cfg.DefaultGuest = filepath.Join(filepath.Dir(cfg.WorkerPath), "hvguest")
	}
	if cfg.Accel == "" {
		cfg.Accel = accel.Auto
	}
	if err := accel.Check(cfg.Accel); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	// One service per state directory: a second would reap the first's
	// workers and write the same definitions.
	lock, err := os.OpenFile(filepath.Join(cfg.StateDir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := flockSoon(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("state directory %s is in use by another vmms: %w", cfg.StateDir, err)
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	st, err := openStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	tok, err := loadToken(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "run"), 0o700); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger, store: st, token: tok, lock: lock,
		byID: map[string]*partition{}, jobs: map[string]*job{}}
	s.cond = sync.NewCond(&s.mu)
	s.resolvePlatforms()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics = newMetrics(s)
	if cfg.Registerer != nil {
		if err := s.metrics.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	s.reapLeftovers()
	defs, problems := st.load()
	for _, err := range problems {
		s.log.Error("definition not loaded", "error", err)
	}
	for _, d := range defs {
		s.add(d)
	}
	go s.refillSpare()
	ok = true
	s.log.Info("root service ready", "state_dir", cfg.StateDir, "partitions", len(defs))
	return s, nil
}

// Token is the API's bearer token.
func (s *Service) Token() string { return s.token }

// add registers a definition; the caller holds s.mu or owns s alone.
func (s *Service) add(d *Definition) *partition {
	p := &partition{def: d, console: newConsole(), state: wmiapi.StateOff, requested: wmiapi.RequestNoChange,
		health: wmiapi.HealthOK, changed: time.Now(),
		log: s.log.Named("partition").With("partition", d.Name, "id", d.ID)}
	s.byID[d.ID] = p
	s.byName = nil
	return p
}

// lookup finds a partition by GUID or ElementName; the caller holds s.mu.
func (s *Service) lookup(name string) (*partition, error) {
	if isGUID(name) {
		if p := s.byID[strings.ToUpper(name)]; p != nil {
			return p, nil
		}
	}
	name = strings.TrimPrefix(name, "Microsoft:")
	if p := s.byID[strings.ToUpper(name)]; p != nil {
		return p, nil
	}
	for _, p := range s.byID {
		if p.def.Name == name {
			return p, nil
		}
	}
	return nil, fault(wmiapi.CodeNotFound, "no partition %q", name)
}

// named finds a partition by ElementName, case-insensitively (names are
// unique that way); the caller holds s.mu.
func (s *Service) named(name string) *partition {
	for _, p := range s.byID {
		if strings.EqualFold(p.def.Name, name) {
			return p
		}
	}
	return nil
}

// ListSystems returns every partition, by name.
func (s *Service) ListSystems() []wmiapi.ComputerSystem {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.byName == nil {
		s.byName = make([]*partition, 0, len(s.byID))
		for _, p := range s.byID {
			s.byName = append(s.byName, p)
		}
		slices.SortFunc(s.byName, func(a, b *partition) int { return strings.Compare(a.def.Name, b.def.Name) })
	}
	out := make([]wmiapi.ComputerSystem, len(s.byName))
	for i, p := range s.byName {
		out[i] = p.computerSystem(now, s.platformOf(p))
	}
	return out
}

// GetSystem returns one partition.
func (s *Service) GetSystem(name string) (wmiapi.ComputerSystem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.lookup(name)
	if err != nil {
		return wmiapi.ComputerSystem{}, err
	}
	return p.computerSystem(time.Now(), s.platformOf(p)), nil
}

// GetSettings returns a partition's definition in WMI terms.
func (s *Service) GetSettings(name string) (wmiapi.SystemSettings, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.lookup(name)
	if err != nil {
		return wmiapi.SystemSettings{}, err
	}
	return settingsOf(p.def), nil
}

// DefineSystem creates a partition definition.
func (s *Service) DefineSystem(req wmiapi.DefineSystemRequest) (wmiapi.DefineSystemResult, error) {
	d := &Definition{Version: definitionVersion, ID: newGUID(), MemoryMB: defaultMemoryMB, Processors: 1,
		ProcID: newGUID(), MemID: newGUID()}
	if err := applyVSSD(d, req.SystemSettings, true); err != nil {
		return wmiapi.DefineSystemResult{}, err
	}
	if len(req.ResourceSettings) > maxDisksGen2+maxNICs+2 {
		return wmiapi.DefineSystemResult{}, invalid("%d resource settings is too many", len(req.ResourceSettings))
	}
	for _, r := range req.ResourceSettings {
		if _, err := applyRASD(d, r, true); err != nil {
			return wmiapi.DefineSystemResult{}, err
		}
	}
	if err := checkDefinition(d); err != nil {
		return wmiapi.DefineSystemResult{}, err
	}
	d.Created = time.Now().UTC().Truncate(time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return wmiapi.DefineSystemResult{}, fault(wmiapi.CodeConflict, "the service is shutting down")
	}
	if s.named(d.Name) != nil {
		return wmiapi.DefineSystemResult{}, fault(wmiapi.CodeConflict, "a partition named %q exists", d.Name)
	}
	if len(s.byID) >= maxPartitions {
		return wmiapi.DefineSystemResult{}, invalid("at most %d partitions", maxPartitions)
	}
	if err := s.store.save(d); err != nil {
		return wmiapi.DefineSystemResult{}, fmt.Errorf("save definition: %w", err)
	}
	p := s.add(d)
	p.log.Info("defined", "generation", d.Generation, "memory_mb", d.MemoryMB, "processors", d.Processors)
	return wmiapi.DefineSystemResult{ReturnValue: wmiapi.ReturnCompleted, ResultingSystem: p.computerSystem(time.Now(), s.platformOf(p)),
		ResultingResourceSettings: settingsOf(d).ResourceSettings}, nil
}

// DestroySystem deletes an Off partition's definition (its disks stay).
func (s *Service) DestroySystem(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.lookup(name)
	if err != nil {
		return err
	}
	if err := s.idle(p); err != nil {
		return err
	}
	if err := s.store.remove(p.def.ID); err != nil {
		return fmt.Errorf("remove definition: %w", err)
	}
	delete(s.byID, p.def.ID)
	s.byName = nil
	p.destroyed = true
	s.metrics.forget(p.def.Name)
	p.log.Info("destroyed")
	return nil
}

// idle wants p Off with no change in flight; the caller holds s.mu.
func (s *Service) idle(p *partition) error {
	if p.job != nil {
		return fault(wmiapi.CodeConflict, "partition %s has a state change in flight (job %s)", p.def.Name, p.job.InstanceID)
	}
	if p.state != wmiapi.StateOff {
		return fault(wmiapi.CodeInvalidState, "partition %s is %s; turn it off first", p.def.Name, stateName(p.state))
	}
	return nil
}

// modify applies fn to a copy of a partition's definition, validates and
// saves it, and only then makes it the live one.
func (s *Service) modify(name string, fn func(d *Definition) error) (*Definition, error) {
	return s.update(name, true, fn)
}

// update is modify; idle says whether the partition must be Off with no
// change running (settings), or may run (its host KVP items).
func (s *Service) update(name string, idle bool, fn func(d *Definition) error) (*Definition, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	if idle {
		if err := s.idle(p); err != nil {
			return nil, err
		}
	}
	d := p.def.clone()
	if err := fn(d); err != nil {
		return nil, err
	}
	if err := checkDefinition(d); err != nil {
		return nil, err
	}
	if other := s.named(d.Name); other != nil && other != p {
		return nil, fault(wmiapi.CodeConflict, "a partition named %q exists", d.Name)
	}
	if err := s.store.save(d); err != nil {
		return nil, fmt.Errorf("save definition: %w", err)
	}
	if d.Name != p.def.Name {
		s.byName = nil
		s.metrics.forget(p.def.Name)
		p.log = s.log.Named("partition").With("partition", d.Name, "id", d.ID)
	}
	p.def = d
	p.log.Info("settings changed")
	return d, nil
}

// ModifySystemSettings changes name or boot files of the partition whose
// InstanceID the settings carry.
func (s *Service) ModifySystemSettings(vssd wmiapi.VirtualSystemSettingData) error {
	if vssd.InstanceID == "" {
		return invalid("SystemSettings.InstanceID names the partition to modify")
	}
	_, err := s.modify(vssd.InstanceID, func(d *Definition) error { return applyVSSD(d, vssd, false) })
	return err
}

// AddResourceSettings adds disks and network connections.
func (s *Service) AddResourceSettings(target string, rs []wmiapi.ResourceSettingData) ([]wmiapi.ResourceSettingData, error) {
	if len(rs) == 0 || len(rs) > maxDisksGen2+maxNICs {
		return nil, invalid("want 1 to %d resource settings", maxDisksGen2+maxNICs)
	}
	return s.applyResources(target, rs, true)
}

// ModifyResourceSettings changes resources named by InstanceID; all must
// belong to one partition.
func (s *Service) ModifyResourceSettings(rs []wmiapi.ResourceSettingData) ([]wmiapi.ResourceSettingData, error) {
	target, err := oneSystem(len(rs), func(i int) string { return rs[i].InstanceID })
	if err != nil {
		return nil, err
	}
	return s.applyResources(target, rs, false)
}

// applyResources adds (adding) or modifies resources of one partition in
// one saved change, and returns their settings as they now are.
func (s *Service) applyResources(target string, rs []wmiapi.ResourceSettingData, adding bool) ([]wmiapi.ResourceSettingData, error) {
	var ids []string
	d, err := s.modify(target, func(d *Definition) error {
		for _, r := range rs {
			id, err := applyRASD(d, r, adding)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pick(d, ids), nil
}

// RemoveResourceSettings removes disks and network connections.
func (s *Service) RemoveResourceSettings(ids []string) error {
	target, err := oneSystem(len(ids), func(i int) string { return ids[i] })
	if err != nil {
		return err
	}
	_, err = s.modify(target, func(d *Definition) error {
		for _, id := range ids {
			if err := removeResource(d, id); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

// oneSystem returns the partition all n resource InstanceIDs belong to.
func oneSystem(n int, id func(int) string) (string, error) {
	if n == 0 || n > maxDisksGen2+maxNICs+2 {
		return "", invalid("want 1 to %d resource settings", maxDisksGen2+maxNICs+2)
	}
	first := ""
	for i := 0; i < n; i++ {
		sys, ok := splitResourceID(id(i))
		if !ok {
			return "", invalid("InstanceID %q: want Microsoft:<system GUID>\\<resource GUID>", id(i))
		}
		if first == "" {
			first = sys
		} else if !strings.EqualFold(first, sys) {
			return "", invalid("resource settings of more than one partition in one call")
		}
	}
	return first, nil
}

// pick returns the settings of the given resources.
func pick(d *Definition, ids []string) []wmiapi.ResourceSettingData {
	all := settingsOf(d).ResourceSettings
	var out []wmiapi.ResourceSettingData
	for _, id := range ids {
		for _, r := range all {
			if strings.HasSuffix(r.InstanceID, `\`+id) {
				out = append(out, r)
			}
		}
	}
	return out
}

// RequestStateChange starts a state change and returns its job. A
// partition runs one change at a time: a request while another is in
// flight is refused with a conflict, never queued behind it or mixed
// with it.
func (s *Service) RequestStateChange(name string, req uint16) (wmiapi.ConcreteJob, error) {
	s.mu.Lock()
	p, err := s.lookup(name)
	if err != nil {
		s.mu.Unlock()
		return wmiapi.ConcreteJob{}, err
	}
	if s.closed {
		s.mu.Unlock()
		return wmiapi.ConcreteJob{}, fault(wmiapi.CodeConflict, "the service is shutting down")
	}
	if j := p.job; j != nil && req == wmiapi.RequestOff && j.RequestedState == wmiapi.RequestShutDown {
		// Turning off overrides a shut down that waits for the guest, as
		// Stop-VM -TurnOff does: that job ends Killed.
		j.superseded = true
		j.cancel()
		s.mu.Unlock()
		<-j.done
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return wmiapi.ConcreteJob{}, fault(wmiapi.CodeConflict, "the service is shutting down")
		}
	}
	if p.job != nil {
		err := fault(wmiapi.CodeConflict, "partition %s has a state change in flight (job %s)", p.def.Name, p.job.InstanceID)
		s.mu.Unlock() // after reading p.job: its change may end at once
		return wmiapi.ConcreteJob{}, err
	}
	pl, err := s.planChange(p, req)
	if err != nil {
		s.mu.Unlock()
		return wmiapi.ConcreteJob{}, err
	}
	now := time.Now().UTC()
	j := &job{ConcreteJob: wmiapi.ConcreteJob{InstanceID: newGUID(), Name: "RequestStateChange",
		Description: fmt.Sprintf("change %s to requested state %d", p.def.Name, req),
		JobState:    wmiapi.JobRunning, TimeSubmitted: now, StartTime: now, AffectedElement: p.def.ID, RequestedState: req},
		done: make(chan struct{})}
	var ctx context.Context
	ctx, j.cancel = context.WithCancel(s.ctx)
	s.remember(j)
	p.job = j
	p.requested = req
	s.setState(p, pl.transitional)
	if pl.transitional == wmiapi.StateStarting {
		// Console followers that arrive from now on wait for the boot's
		// output instead of finding a console with no writer.
		p.console.setLive(true)
	}
	snapshot := j.ConcreteJob
	s.jobsWG.Add(1)
	s.mu.Unlock()

	go func() {
		defer s.jobsWG.Done()
		err := pl.run(ctx)
		j.cancel()
		s.mu.Lock()
		end := time.Now().UTC()
		j.TimeCompleted = &end
		j.ElapsedTimeMS = uint64(end.Sub(j.StartTime).Milliseconds())
		j.PercentComplete = 100
		switch {
		case j.superseded:
			j.JobState = wmiapi.JobKilled
			j.ErrorCode = wmiapi.ReturnFailed
			j.ErrorDescription = "superseded: the partition was turned off"
		case err != nil:
			j.JobState = wmiapi.JobException
			j.ErrorCode = wmiapi.ReturnFailed
			j.ErrorDescription = err.Error()
			p.log.Warn("state change failed", "requested", req, "error", err)
		default:
			j.JobState = wmiapi.JobCompleted
		}
		p.job = nil
		p.requested = wmiapi.RequestNoChange
		close(j.done)
		s.mu.Unlock()
	}()
	return snapshot, nil
}

// remember stores a job, forgetting the oldest finished ones beyond the
// limit; the caller holds s.mu.
func (s *Service) remember(j *job) {
	s.jobs[j.InstanceID] = j
	s.jobSeq = append(s.jobSeq, j.InstanceID)
	for len(s.jobSeq) > maxFinishedJobs {
		old := s.jobs[s.jobSeq[0]]
		select {
		case <-old.done:
		default:
			return // the oldest still runs: keep everything for now
		}
		delete(s.jobs, s.jobSeq[0])
		s.jobSeq = s.jobSeq[1:]
	}
}

// GetJob returns a job.
func (s *Service) GetJob(id string) (wmiapi.ConcreteJob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[strings.ToUpper(id)]
	if j == nil {
		return wmiapi.ConcreteJob{}, fault(wmiapi.CodeNotFound, "no job %q", id)
	}
	return s.jobView(j), nil
}

// jobView is a job as the API shows it; the caller holds s.mu.
func (s *Service) jobView(j *job) wmiapi.ConcreteJob {
	v := j.ConcreteJob
	if v.TimeCompleted == nil {
		v.ElapsedTimeMS = uint64(time.Since(v.StartTime).Milliseconds())
	}
	return v
}

// ListJobs returns the jobs the service remembers, newest first.
func (s *Service) ListJobs() []wmiapi.ConcreteJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]wmiapi.ConcreteJob, 0, len(s.jobSeq))
	for i := len(s.jobSeq) - 1; i >= 0; i-- {
		out = append(out, s.jobView(s.jobs[s.jobSeq[i]]))
	}
	return out
}

// Console returns a partition's console.
func (s *Service) ConsoleOf(name string) (wmiapi.ConsoleSource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	return p.console, nil
}

// SendConsole writes bytes to a running partition's COM1.
func (s *Service) SendConsole(name string, data []byte) error {
	s.mu.Lock()
	p, err := s.lookup(name)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	w := p.worker
	pname := p.def.Name
	s.mu.Unlock()
	if w == nil {
		return fault(wmiapi.CodeInvalidState, "partition %s is not running", pname)
	}
	if err := w.writeInput(data); err != nil {
		return fault(wmiapi.CodeConflict, "console input to %s: %v", pname, err)
	}
	s.metrics.consoleIn.WithLabelValues(pname).Add(float64(len(data)))
	return nil
}

// Close stops taking changes, turns off every running partition (their
// workers flush the disks) and waits for them.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true // no new definitions or state changes from here
	s.mu.Unlock()
	// Changes in flight end first: their context is cancelled, so a start
	// gives up (its worker is killed) and a shut down stops waiting.
	s.cancel()
	s.jobsWG.Wait()
	s.dropSpare()
	s.mu.Lock()
	var ws []*worker
	var ps []*partition
	for _, p := range s.byID {
		if p.worker != nil {
			p.expectStop = true
			ws = append(ws, p.worker)
			ps = append(ps, p)
		}
	}
	s.mu.Unlock()
	for i, w := range ws {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		if _, err := w.request(ctx, &control.Message{Type: control.TypeTurnOff}); err != nil && !errors.Is(err, errWorkerGone) {
			w.kill()
		}
		select {
		case <-w.done:
		case <-ctx.Done():
			w.kill()
			<-w.done
		}
		cancel()
		s.waitOff(ps[i], w)
	}
	s.log.Info("root service stopped", "partitions_stopped", len(ws))
	return s.lock.Close()
}

// flockSoon takes f's exclusive flock, waiting a moment if it is held: a
// process of ours forked between its fork and its exec holds the lock
// of a service that has just closed (the descriptor is close-on-exec,
// but the lock belongs to the open file, which the child shares until
// it execs), and a real second vmms holds it for longer.
func flockSoon(f *os.File) error {
	deadline := time.Now().Add(250 * time.Millisecond)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// PID files: DIR/run/<id>.pid names each live worker, so that a root
// restarted after a crash can find workers of its earlier run that are
// still alive (they stop themselves when their control socket closes;
// this catches one that hangs).
func (s *Service) pidPath(id string) string {
	return filepath.Join(s.cfg.StateDir, "run", id+".pid")
}

func (s *Service) writePID(id string, pid int) {
	if err := writeFileAtomic(s.pidPath(id), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		s.log.Warn("pid file", "error", err)
	}
}

func (s *Service) removePID(id string) { os.Remove(s.pidPath(id)) }

// reapLeftovers kills workers of an earlier run that are still alive.
func (s *Service) reapLeftovers() {
	files, _ := filepath.Glob(filepath.Join(s.cfg.StateDir, "run", "*.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pid > 1 && isWorker(pid) {
			s.log.Warn("stopping a worker left over from an earlier run", "pid", pid)
			syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 100 && isWorker(pid); i++ {
				time.Sleep(10 * time.Millisecond)
			}
		}
		os.Remove(f)
	}
}

// isWorker reports whether pid is a live process whose argv[0] is a
// worker's.
func isWorker(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		// A zombie still has its cmdline empty; skip state Z.
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
			return false
		}
	}
	return argv0 == WorkerArgv0
}
