package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// hvctl runs run in-process with the given environment.
func hvctl(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return vars[k] }})
	return code, out.String(), errb.String()
}

func TestRunUsage(t *testing.T) {
	code, out, errs := hvctl(t, nil, "--help")
	if code != 0 || !strings.HasPrefix(out, "Usage: hvctl") || errs != "" {
		t.Errorf("--help: %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = hvctl(t, nil, "start-vm")
	if code != 2 || out != "" || !strings.HasPrefix(errs, "hvctl: start-vm takes 1 operand, got 0\n\nUsage: hvctl") {
		t.Errorf("start-vm without NAME: %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestFindToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, wmiapi.TokenFile), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withEnv := func(k string) string { return map[string]string{wmiapi.EnvToken: "from-env"}[k] }
	noEnv := func(string) string { return "" }

	// An explicit --state-dir wins over $PARTITA_TOKEN.
	if tok, err := findToken(dir, withEnv); err != nil || tok != "from-file" {
		t.Errorf("--state-dir with $%s: %q, %v; want from-file", wmiapi.EnvToken, tok, err)
	}
	if tok, err := findToken("", withEnv); err != nil || tok != "from-env" {
		t.Errorf("$%s: %q, %v; want from-env", wmiapi.EnvToken, tok, err)
	}
	_, err := findToken(filepath.Join(dir, "nowhere"), noEnv)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "nowhere", wmiapi.TokenFile)) {
		t.Errorf("missing token file: %v", err)
	}
	// Nothing given: the default state directory.
	if os.Geteuid() != 0 {
		state := t.TempDir()
		t.Setenv("XDG_STATE_HOME", state)
		os.MkdirAll(filepath.Join(state, "partita"), 0o700)
		if err := os.WriteFile(filepath.Join(state, "partita", wmiapi.TokenFile), []byte("from-default"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err = findToken("", noEnv)
	if want := filepath.Join(wmiapi.DefaultStateDir(), wmiapi.TokenFile); err != nil && !strings.Contains(err.Error(), want) {
		t.Errorf("default token: %v, want it to name %s", err, want)
	}
	if os.Geteuid() != 0 {
		if tok, err := findToken("", noEnv); err != nil || tok != "from-default" {
			t.Errorf("default state dir: %q, %v; want from-default", tok, err)
		}
	}
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, wmiapi.TokenFile), []byte(" \n"), 0o600)
	if _, err := findToken(empty, noEnv); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty token file: %v", err)
	}
}

func TestRunUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	vars := map[string]string{wmiapi.EnvServer: addr, wmiapi.EnvToken: "t"}
	code, out, errs := hvctl(t, vars, "get-vm")
	if code != 1 || out != "" || !strings.HasPrefix(errs, "hvctl: cannot reach vmms at "+addr+": ") ||
		strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "refused") {
		t.Errorf("unreachable: %d, stdout %q, stderr %q", code, out, errs)
	}
	// --server wins over $PARTITA_SERVER.
	code, _, errs = hvctl(t, vars, "--server", "unix:"+filepath.Join(t.TempDir(), "none.sock"), "get-vm")
	if code != 1 || !strings.Contains(errs, "none.sock") {
		t.Errorf("--server: %d, stderr %q", code, errs)
	}
	code, _, errs = hvctl(t, vars, "--server", "nonsense", "get-vm")
	if code != 1 || !strings.HasPrefix(errs, `hvctl: server "nonsense"`) {
		t.Errorf("bad --server: %d, stderr %q", code, errs)
	}
}
