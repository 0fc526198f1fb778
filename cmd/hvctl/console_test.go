package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/partita-hv/partita/wmi-api/client"
)

// TestPumpInput checks what console sends of its input: everything
// before ctrl-] or the end of input. The handler only records the
// console POSTs' bodies.
func TestPumpInput(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		sent = append(sent, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c, err := client.New(srv.URL, "t")
	if err != nil {
		t.Fatal(err)
	}
	const path = "POST /api/v2/Msvm_ComputerSystem/web1/console "
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"ls\r", []string{path + "ls\r"}},
		{"ab\x1dcd", []string{path + "ab"}},
		{"\x1d", nil},
		{"", nil},
	} {
		sent = nil
		x := &cmd{c: c, env: env{stdin: strings.NewReader(tc.in)}}
		if err := x.pumpInput(context.Background(), "web1"); err != nil {
			t.Errorf("%q: %v", tc.in, err)
		}
		mu.Lock()
		if strings.Join(sent, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q: sent %q, want %q", tc.in, sent, tc.want)
		}
		mu.Unlock()
	}
}
