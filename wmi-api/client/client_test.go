package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// These tests check the client's transport: addresses, headers, paths
// and the decoding of error responses. The handlers answer fixed bytes;
// the API's behaviour is tested against the real service.

func newClient(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, "sekrit")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewAddresses(t *testing.T) {
	for _, tc := range []struct {
		server, base string
	}{
		{"127.0.0.1:8420", "http://127.0.0.1:8420"},
		{"localhost:1", "http://localhost:1"},
		{"[::1]:8420", "http://[::1]:8420"},
		{"http://127.0.0.1:8420", "http://127.0.0.1:8420"},
		{"http://127.0.0.1:8420/", "http://127.0.0.1:8420"},
		{"https://vmms.example:443", "https://vmms.example:443"},
		{"unix:/run/partita/api.sock", "http://unix"},
	} {
		c, err := New(tc.server, "")
		if err != nil {
			t.Errorf("New(%q): %v", tc.server, err)
			continue
		}
		if c.base != tc.base {
			t.Errorf("New(%q): base %q, want %q", tc.server, c.base, tc.base)
		}
	}
	for _, bad := range []string{"", "127.0.0.1", "unix:", "http://", "http://h:1/api", "ftp://h:1"} {
		if _, err := New(bad, ""); err == nil {
			t.Errorf("New(%q) = nil error", bad)
		}
	}
}

func TestErrorDecoding(t *testing.T) {
	for _, tc := range []struct {
		status         int
		body           string
		code, message  string
		errText        string
		isNotFoundCode bool
	}{
		{404, `{"error":{"code":"not_found","message":"no partition \"web9\""}}`, wmiapi.CodeNotFound, `no partition "web9"`,
			`not_found: no partition "web9"`, true},
		{409, `{"error":{"code":"invalid_state","message":"partition web1 is Running; turn it off first"}}`,
			wmiapi.CodeInvalidState, "partition web1 is Running; turn it off first",
			"invalid_state: partition web1 is Running; turn it off first", false},
		{502, "bad gateway\n", "", "bad gateway", "HTTP 502: bad gateway", false},
		{500, "", "", "Internal Server Error", "HTTP 500: Internal Server Error", false},
		{400, `{"error":{}}`, "", `{"error":{}}`, `HTTP 400: {"error":{}}`, false},
	} {
		c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		})
		_, err := c.GetSystem(context.Background(), "web9")
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Errorf("%d %q: error %v is not an *APIError", tc.status, tc.body, err)
			continue
		}
		if ae.Status != tc.status || ae.Code != tc.code || ae.Message != tc.message {
			t.Errorf("%d %q: got %+v", tc.status, tc.body, *ae)
		}
		if err.Error() != tc.errText {
			t.Errorf("%d %q: Error() = %q, want %q", tc.status, tc.body, err.Error(), tc.errText)
		}
		if IsCode(err, wmiapi.CodeNotFound) != tc.isNotFoundCode {
			t.Errorf("%d %q: IsCode(not_found) = %v", tc.status, tc.body, !tc.isNotFoundCode)
		}
	}
}

func TestRequestShape(t *testing.T) {
	type seen struct{ method, uri, auth, ctype, body string }
	got := make(chan seen, 1)
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)}
		switch {
		case strings.HasSuffix(r.URL.Path, "/RequestStateChange"):
			io.WriteString(w, `{"ReturnValue":4096,"Job":{"InstanceID":"J1","JobState":4}}`)
		case strings.HasSuffix(r.URL.Path, "/console") && r.Method == http.MethodPost:
			w.WriteHeader(http.StatusNoContent)
		default:
			io.WriteString(w, `{"ReturnValue":0}`)
		}
	})
	ctx := context.Background()
	for _, tc := range []struct {
		call func() error
		want seen
	}{
		{func() error { _, err := c.GetSystem(ctx, "my vm/1"); return err },
			seen{"GET", "/api/v2/Msvm_ComputerSystem/my%20vm%2F1", "Bearer sekrit", "", ""}},
		{func() error {
			j, err := c.RequestStateChange(ctx, "web1", wmiapi.RequestRunning)
			if err == nil && j.InstanceID != "J1" {
				t.Errorf("job %+v", j)
			}
			return err
		}, seen{"POST", "/api/v2/Msvm_ComputerSystem/web1/RequestStateChange", "Bearer sekrit", "application/json", `{"RequestedState":2}`}},
		{func() error { return c.DestroySystem(ctx, "web1") },
			seen{"POST", "/api/v2/Msvm_VirtualSystemManagementService/DestroySystem", "Bearer sekrit", "application/json", `{"AffectedSystem":"web1"}`}},
		{func() error { return c.SendConsole(ctx, "web1", []byte("ls\r")) },
			seen{"POST", "/api/v2/Msvm_ComputerSystem/web1/console", "Bearer sekrit", "application/octet-stream", "ls\r"}},
		{func() error { _, err := c.GetJob(ctx, "J1"); return err },
			seen{"GET", "/api/v2/Msvm_ConcreteJob/J1", "Bearer sekrit", "", ""}},
		{func() error { return c.Healthz(ctx) },
			seen{"GET", "/healthz", "Bearer sekrit", "", ""}},
	} {
		if err := tc.call(); err != nil {
			t.Errorf("%s %s: %v", tc.want.method, tc.want.uri, err)
		}
		if s := <-got; s != tc.want {
			t.Errorf("sent %+v\nwant %+v", s, tc.want)
		}
	}
}

func TestNonZeroReturnValue(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ReturnValue":32768}`)
	})
	if err := c.DestroySystem(context.Background(), "web1"); err == nil || !strings.Contains(err.Error(), "32768") {
		t.Errorf("DestroySystem: %v, want a ReturnValue 32768 error", err)
	}
}

func TestUnixSocket(t *testing.T) {
	dir, err := filepath.Abs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no unix sockets here: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/Msvm_ConcreteJob" || r.Header.Get("Authorization") != "Bearer t0k" {
			http.Error(w, `{"error":{"code":"not_found","message":"`+r.URL.Path+`"}}`, http.StatusNotFound)
			return
		}
		io.WriteString(w, `[{"InstanceID":"A","JobState":7},{"InstanceID":"B","JobState":10}]`)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	c, err := New("unix:"+sock, "t0k")
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := c.ListJobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].InstanceID != "A" || !JobDone(jobs[1]) {
		t.Errorf("jobs %+v", jobs)
	}
}

func TestConsoleCursor(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "cursor=5" {
			http.Error(w, "query "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		w.Header().Set(wmiapi.ConsoleStartHeader, "100")
		w.Header().Set(wmiapi.ConsoleCursorHeader, "106")
		io.WriteString(w, "login:")
	})
	var out bytes.Buffer
	next, err := c.Console(context.Background(), "web1", 5, false, &out)
	if err != nil || next != 106 || out.String() != "login:" {
		t.Errorf("Console = %d, %v, output %q; want 106, nil, \"login:\"", next, err, out.String())
	}
}

// signalWriter reports when bytes arrive. (It has no ReadFrom, so that
// io.Copy writes to it as the bytes come.)
type signalWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	got chan struct{}
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, err := w.buf.Write(p)
	w.mu.Unlock()
	select {
	case w.got <- struct{}{}:
	default:
	}
	return n, err
}

func TestConsoleFollowCancel(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") != "true" {
			http.Error(w, "want follow", http.StatusBadRequest)
			return
		}
		w.Header().Set(wmiapi.ConsoleStartHeader, "40")
		w.Header().Set(wmiapi.ConsoleCursorHeader, "40")
		io.WriteString(w, "boot\r\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &signalWriter{got: make(chan struct{}, 1)}
	done := make(chan struct{})
	var next uint64
	var err error
	go func() {
		next, err = c.Console(ctx, "web1", 0, true, out)
		close(done)
	}()
	select {
	case <-out.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no streamed bytes")
	}
	cancel()
	<-done
	if !errors.Is(err, context.Canceled) || next != 46 || out.String() != "boot\r\n" {
		t.Errorf("Console = %d, %v, output %q; want 46, context.Canceled, \"boot\\r\\n\"", next, err, out.String())
	}
}

func TestResponseLimit(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "[")
		io.WriteString(w, strings.Repeat(" ", MaxResponse))
		io.WriteString(w, "]")
	})
	_, err := c.ListSystems(context.Background())
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ListSystems: %v, want a too-large error", err)
	}
}

func TestWaitJobContext(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"InstanceID":"J1","JobState":4}`)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	j, err := c.WaitJob(ctx, "J1")
	if !errors.Is(err, context.DeadlineExceeded) || j.InstanceID != "J1" {
		t.Errorf("WaitJob = %+v, %v; want the running job and a deadline error", j, err)
	}
}
