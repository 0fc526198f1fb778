package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// TestMetricsLint: a scrape passes promtool's checks.
func TestMetricsLint(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	v := startVMMS(t, t.TempDir())
	v.call("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem",
		wmiapi.DefineSystemRequest{SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: "lint"}}, nil)
	v.call("GET", wmiapi.Prefix+"/Msvm_ComputerSystem", nil, nil)
	scrape := v.scrape()
	for _, want := range []string{"partita_partitions{state=\"off\"} 1", "partita_api_requests_total", "partita_api_request_duration_seconds_bucket",
		"partita_worker_starts_total", "partita_worker_exits_total", "partita_worker_crashes_total"} {
		if !strings.Contains(scrape, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestPrometheusScrapes: a real Prometheus server scrapes vmms and its
// query API returns a partita_ series.
func TestPrometheusScrapes(t *testing.T) {
	prom := testenv.RequireTool(t, "prometheus")
	v := startVMMS(t, t.TempDir())
	v.call("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem",
		wmiapi.DefineSystemRequest{SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: "scraped"}}, nil)
	dir := t.TempDir()
	target := strings.TrimPrefix(v.base, "http://")
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vmms\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	q := "http://" + listen + "/api/v1/query?query=" + url.QueryEscape(`partita_partitions{state="off"}`)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var res struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  []any             `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		resp, err := http.Get(q)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if json.Unmarshal(b, &res) == nil && res.Status == "success" && len(res.Data.Result) > 0 {
				r := res.Data.Result[0]
				if r.Metric["job"] != "vmms" || len(r.Value) != 2 || r.Value[1] != "1" {
					t.Fatalf("unexpected series: %s", b)
				}
				t.Logf("Prometheus has %v = %v", r.Metric, r.Value[1])
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus has no partita_ series after 60 s; its log:\n%s", logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}
