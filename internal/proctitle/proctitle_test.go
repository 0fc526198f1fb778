package proctitle

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSet re-executes the test binary with a placeholder argument and has
// it rename itself; the parent reads the child's cmdline.
func TestSet(t *testing.T) {
	if os.Getenv("PROCTITLE_CHILD") == "1" {
		if err := Set(len(os.Args)-1, "named"); err != nil {
			os.Exit(2)
		}
		if Set(len(os.Args)-1, strings.Repeat("x", 100)) == nil {
			os.Exit(3)
		}
		os.Stdout.Write([]byte("ready\n"))
		buf := make([]byte, 1)
		os.Stdin.Read(buf)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSet$", "PLACEHOLDER-0123456789")
	cmd.Env = append(os.Environ(), "PROCTITLE_CHILD=1")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer in.Close()
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	b, err := os.ReadFile("/proc/" + itoa(cmd.Process.Pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if args[len(args)-1] != "named" || strings.Contains(string(b), "PLACEHOLDER") {
		t.Fatalf("cmdline %q", b)
	}
}

func itoa(n int) string {
	s := ""
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}
