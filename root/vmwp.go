package root

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/partita-hv/partita/guestmem"
	"github.com/partita-hv/partita/partition/control"
)

// WorkerArgv0 is the argv[0] the root gives a worker process it starts by
// re-executing a binary: the binary's main runs the worker when it sees it.
const WorkerArgv0 = "vmwp"

// workerExit is how a worker process ended.
type workerExit struct {
	stopped *control.Stopped // the partition's own report, if it sent one
	err     error            // the process's exit status (nil: exit 0)
	crash   bool             // the process died without reporting
	reason  string           // one line for people
}

// worker is one running worker process, from the root's side.
type worker struct {
	log  hclog.Logger
	cmd  *exec.Cmd
	conn *control.Conn
	mem  *guestmem.Memory // the root's own mapping of guest memory, for VSPs
	// platform is what the worker said runs the partition; set by start.
	platform string
	bus      *partitionBus // a Generation 2 partition's VMBus host; set by start
	in       *os.File      // the worker's COM1 input (its stdin)
	stderr   *logLines
	console  *switchWriter

	mu        sync.Mutex
	seq       uint64
	pending   map[uint64]chan *control.Message
	stopped   *control.Stopped
	lastNoise time.Time

	done chan struct{} // closed once the process is reaped; exit is set
	exit workerExit
}

// launchWorker starts a worker process that waits for its partition: exe
// re-executed with argv[0] WorkerArgv0, the control socket as fd 3,
// standard input for the guest's COM1 input, standard output for its COM1
// output (sent wherever assign says), standard error for its log lines.
// label is what ps shows as the partition (a spare's placeholder, which
// the worker overwrites with the name once it has one).
func launchWorker(exe, label, choice string, log hclog.Logger) (*worker, error) {
	conn, theirs, err := control.Pair()
	if err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		conn.Close()
		theirs.Close()
		return nil, err
	}
	stderr := &logLines{log: log}
	console := &switchWriter{}
	cmd := &exec.Cmd{
		Path:       exe,
		Args:       []string{WorkerArgv0, "--partition", label, "--control-fd", "3", "--accel", choice},
		ExtraFiles: []*os.File{theirs},
		Stdin:      inR,
		Stdout:     console,
		Stderr:     stderr,
		Env:        os.Environ(),
		// Its own process group: a terminal's ^C or a signal to the
		// root's group does not reach it; the root stops it over the
		// control socket, after which it flushes its disks.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		// A worker that leaves a child holding its output pipes must not
		// keep Wait (and so the partition's state) hanging.
		WaitDelay: 2 * time.Second,
	}
	err = cmd.Start()
	theirs.Close()
	inR.Close()
	if err != nil {
		conn.Close()
		inW.Close()
		return nil, fmt.Errorf("start worker: %w", err)
	}
	w := &worker{log: log, cmd: cmd, conn: conn, in: inW, stderr: stderr, console: console,
		pending: map[uint64]chan *control.Message{}, done: make(chan struct{})}
	go w.supervise()
	return w, nil
}

// noise logs a complaint about the worker's records, at most one per
// second (a broken or hostile worker could send them without end).
func (w *worker) noise(msg string, args ...any) {
	w.mu.Lock()
	now := time.Now()
	quiet := now.Sub(w.lastNoise) < time.Second
	if !quiet {
		w.lastNoise = now
	}
	w.mu.Unlock()
	if !quiet {
		w.logger().Warn(msg, args...)
	}
}

func (w *worker) logger() hclog.Logger {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log
}

// alive reports whether the worker process still runs.
func (w *worker) alive() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// assign gives the worker its partition's logger and console.
func (w *worker) assign(log hclog.Logger, console io.Writer) {
	w.mu.Lock()
	w.log = log
	w.mu.Unlock()
	w.stderr.setLogger(log)
	w.console.set(console)
}

// start creates the partition's guest memory, hands it and the
// definition to the worker, and waits for the partition to run.
func (w *worker) start(ctx context.Context, d *Definition, bc busConfig) error {
	mem, err := guestmem.New(d.Name, d.MemoryMB<<20)
	if err != nil {
		w.kill()
		<-w.done
		return fmt.Errorf("guest memory: %w", err)
	}
	w.mu.Lock()
	w.mem = mem
	w.mu.Unlock()
	disks := make([]string, len(d.Disks))
	for i, disk := range d.Disks {
		disks[i] = disk.Path
	}
	st := &control.Start{Name: d.Name, ID: d.ID, Generation: d.Generation, Firmware: d.Firmware, Program: d.Guest, Disks: disks,
		MemoryBytes: d.MemoryMB << 20, Processors: d.Processors}
	files := []*os.File{mem.File()}
	if d.Generation == 2 {
		bc.consoleOut, bc.log = w.console, w.logger()
		bus, guestEnd, err := newPartitionBus(mem, bc)
		if err != nil {
			w.kill()
			<-w.done
			return fmt.Errorf("VMBus host: %w", err)
		}
		defer guestEnd.Close() // the worker has its own once the request is sent
		w.mu.Lock()
		w.bus = bus
		w.mu.Unlock()
		st.VMBus = true
		files = append(files, guestEnd)
	}
	reply, err := w.request(ctx, &control.Message{Type: control.TypeStart, Start: st}, files...)
	if err == nil {
		w.platform = reply.Platform
	}
	if err != nil {
		w.kill()
		<-w.done
		if reply != nil {
			return err // the worker's own reason for refusing
		}
		if w.exit.crash || w.exit.stopped != nil {
			reason := w.exit.reason
			if last := w.stderr.last(); last != "" {
				reason += ": " + last
			}
			return errors.New(reason)
		}
		return err
	}
	return nil
}

// busOf returns the worker's VMBus host, if its partition has one.
func (w *worker) busOf() *partitionBus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bus
}

// switchWriter forwards to a writer set later; bytes before that are
// dropped (a spare worker writes nothing before its start).
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	w := s.w
	s.mu.Unlock()
	if w == nil {
		return len(p), nil
	}
	return w.Write(p)
}

// errWorkerGone: the worker ended before it answered.
var errWorkerGone = errors.New("worker process ended")

// request sends one request and waits for its reply.
func (w *worker) request(ctx context.Context, m *control.Message, files ...*os.File) (*control.Message, error) {
	ch := make(chan *control.Message, 1)
	w.mu.Lock()
	w.seq++
	m.Seq = w.seq
	w.pending[m.Seq] = ch
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.pending, m.Seq)
		w.mu.Unlock()
	}()
	if err := w.conn.Send(m, files...); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if r.Error != "" {
			return r, errors.New(oneLine(r.Error))
		}
		return r, nil
	case <-w.done:
		return nil, errWorkerGone
	case <-ctx.Done():
		return nil, fmt.Errorf("worker did not answer %s: %w", m.Type, ctx.Err())
	}
}

// supervise reads the worker's messages until its socket closes, then
// reaps the process and records how it ended.
func (w *worker) supervise() {
	bad := 0
	for {
		m, files, err := w.conn.Recv()
		for _, f := range files {
			f.Close()
		}
		if errors.Is(err, control.ErrClosed) {
			break
		}
		if err != nil {
			bad++
			w.noise("bad record from worker", "error", err)
			if bad > 100 {
				w.logger().Error("worker keeps sending bad records; killing it")
				w.kill()
				break
			}
			continue
		}
		switch m.Type {
		case control.TypeReply:
			// One reply per request: the entry goes with the first, and
			// the send cannot block (the channel has room for one).
			w.mu.Lock()
			ch := w.pending[m.Seq]
			delete(w.pending, m.Seq)
			w.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			} else {
				w.noise("reply to no request", "seq", m.Seq)
			}
		case control.TypeStopped:
			w.mu.Lock()
			w.stopped = m.Stopped
			w.mu.Unlock()
		default:
			w.noise("unexpected record from worker", "type", m.Type)
		}
	}
	err := w.cmd.Wait()
	w.conn.Close()
	w.in.Close()
	w.mu.Lock()
	if w.bus != nil {
		w.bus.close() // before the memory its devices use
	}
	if w.mem != nil {
		w.mem.Close()
	}
	w.mu.Unlock()
	w.mu.Lock()
	st := w.stopped
	w.mu.Unlock()
	ex := workerExit{stopped: st, err: err}
	switch {
	case st != nil:
		ex.reason = oneLine(st.Reason)
		if st.FlushErr != "" {
			ex.reason += "; flushing disks failed: " + oneLine(st.FlushErr)
		}
	case err != nil:
		ex.crash = true
		ex.reason = "worker process died: " + err.Error()
	default:
		ex.crash = true
		ex.reason = "worker process exited without a report"
	}
	w.exit = ex
	close(w.done)
}

// kill ends the process now.
func (w *worker) kill() {
	if w.cmd.Process != nil {
		w.cmd.Process.Kill()
	}
}

// pid is the worker's process id.
func (w *worker) pid() int { return w.cmd.Process.Pid }

// writeInput sends bytes to the guest's COM1, waiting at most a while for
// a guest that does not read.
func (w *worker) writeInput(p []byte) error {
	w.mu.Lock()
	bus := w.bus
	w.mu.Unlock()
	if bus != nil && bus.console.Connected() {
		// A Generation 2 guest that opened its synthetic console reads
		// it there; before that, input goes to the program's standard
		// input, as for a program that never opens it.
		return bus.console.Input(p)
	}
	w.in.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := w.in.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errors.New("the guest is not reading its console input")
	}
	return err
}

// logLines re-logs the worker's standard error, line by line, under the
// partition's logger.
type logLines struct {
	log      hclog.Logger
	mu       sync.Mutex
	partial  []byte
	lastLine string

	tokens  float64   // the rate limit's bucket
	last0   time.Time // when it was last filled
	dropped int
}

func (l *logLines) setLogger(log hclog.Logger) {
	l.mu.Lock()
	l.log = log
	l.mu.Unlock()
}

// relog logs one line of the worker's: hclog JSON with its level, message
// and fields (less those the partition's logger has already), anything
// else as text. It returns the line's message.
func relog(log hclog.Logger, line string) string {
	var rec map[string]any
	if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &rec) != nil {
		log.Info("worker", "line", line)
		return line
	}
	msg, _ := rec["@message"].(string)
	level, _ := rec["@level"].(string)
	var args []any
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch k {
		case "@message", "@level", "@timestamp", "@module", "@caller", "partition", "name", "id":
			continue
		}
		args = append(args, k, rec[k])
	}
	lvl := hclog.LevelFromString(level)
	if lvl == hclog.NoLevel {
		lvl = hclog.Info
	}
	log.Log(lvl, "worker: "+msg, args...)
	if e, ok := rec["error"].(string); ok && e != "" {
		return msg + ": " + e
	}
	return msg
}

// last is the last line the worker wrote.
func (l *logLines) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastLine
}

func (l *logLines) Write(p []byte) (int, error) {
	n := len(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		if line != "" && l.allow() {
			l.lastLine = oneLine(relog(l.log, line))
		}
	}
	if len(l.partial) > maxLogLine {
		if l.allow() {
			l.lastLine = oneLine(relog(l.log, string(l.partial[:maxLogLine])))
		}
		l.partial = l.partial[:0]
	}
	return n, nil
}

// Limits on what a worker may make the root log: a token bucket of
// lines, and the length of one line.
const (
	logLinesPerSecond = 50
	logBurst          = 200
	maxLogLine        = 4 << 10
)

// allow takes a token from the bucket; the caller holds l.mu. Lines
// beyond the rate are dropped and counted, and the count is logged with
// the next line let through.
func (l *logLines) allow() bool {
	now := time.Now()
	if l.last0.IsZero() {
		l.tokens, l.last0 = logBurst, now
	}
	l.tokens = min(logBurst, l.tokens+now.Sub(l.last0).Seconds()*logLinesPerSecond)
	l.last0 = now
	if l.tokens < 1 {
		l.dropped++
		return false
	}
	l.tokens--
	if l.dropped > 0 {
		l.log.Warn("worker log lines dropped: over the rate limit", "lines", l.dropped)
		l.dropped = 0
	}
	return true
}

// oneLine makes a worker-supplied text fit to show: printable, one line,
// at most maxReason bytes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7F {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > maxReason {
		s = strings.ToValidUTF8(s[:maxReason], "") + "…"
	}
	return s
}

// maxReason bounds the stop reasons and messages a worker can put in the
// API's answers.
const maxReason = 256
