package main

import (
	"strings"
	"testing"
	"time"
)

// TestBadFlags: flag values out of range are refused with an error that
// names the flag, before anything starts.
func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		name                              string
		logFormat, logLevel, choice, want string
		poll                              time.Duration
	}{
		{"log format", "xml", "info", "auto", "--log-format", time.Microsecond},
		{"log level", "text", "loud", "auto", "--log-level", time.Microsecond},
		{"negative poll", "text", "info", "auto", "--vmbus-poll", -time.Microsecond},
		{"poll too long", "text", "info", "auto", "--vmbus-poll", 11 * time.Millisecond},
		{"platform", "text", "info", "qemu", "--accel", time.Microsecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := run(t.TempDir(), "127.0.0.1:0", c.logFormat, c.logLevel, c.choice, true, false, c.poll)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error naming %s", err, c.want)
			}
		})
	}
}
