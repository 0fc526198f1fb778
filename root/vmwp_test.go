package root

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestWorkerLogLinesRelogged(t *testing.T) {
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace})
	l := &logLines{log: log}
	l.Write([]byte(`{"@level":"error","@message":"partition not started","@module":"vmwp","@timestamp":"x","error":"no disk","partition":"p","disks":["/a"]}` + "\n" + "plain "))
	l.Write([]byte("text\n"))
	out := buf.String()
	for _, want := range []string{"[ERROR] worker: partition not started: disks=[/a] error=\"no disk\"", "[INFO]  worker: line=\"plain text\""} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "@timestamp") || strings.Contains(out, "partition=p") {
		t.Errorf("duplicate fields relogged:\n%s", out)
	}
	if l.last() != "plain text" {
		t.Errorf("last line %q", l.last())
	}
}

func TestOneLineBoundsWorkerText(t *testing.T) {
	if got := oneLine("a\nb\x00c\x1b[2J"); got != "a b c [2J" {
		t.Errorf("control characters: %q", got)
	}
	long := oneLine(strings.Repeat("é", 1000))
	if len(long) > maxReason+len("…") || !strings.HasSuffix(long, "…") {
		t.Errorf("long text: %d bytes", len(long))
	}
	if got := oneLine("\xff\xfe ok"); got != "? ok" {
		t.Errorf("invalid UTF-8: %q", got)
	}
}

func TestWorkerLogLinesRateLimited(t *testing.T) {
	var buf bytes.Buffer
	l := &logLines{log: hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace})}
	var lines bytes.Buffer
	for i := 0; i < 10*logBurst; i++ {
		lines.WriteString("noise\n")
	}
	l.Write(lines.Bytes())
	if n := strings.Count(buf.String(), "line=noise"); n < logBurst-1 || n > logBurst+50 {
		t.Errorf("%d of %d lines logged, want about the burst of %d", n, 10*logBurst, logBurst)
	}
	// A single line without an end is cut, not kept growing.
	l.Write(bytes.Repeat([]byte("x"), 3*maxLogLine))
	if len(l.partial) > maxLogLine {
		t.Errorf("partial line kept %d bytes", len(l.partial))
	}
}

// TestSpareLabelFitsNames: a spare worker writes the partition's name over
// its placeholder argument, so the placeholder must hold the longest name.
func TestSpareLabelFitsNames(t *testing.T) {
	if len(spareLabel) < maxNameLen {
		t.Fatalf("spare placeholder holds %d bytes, names take up to %d", len(spareLabel), maxNameLen)
	}
}
