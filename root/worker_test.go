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
