package wmiapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/partita-hv/partita/root"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// apiServer is the real root service behind the real handler, over
// loopback HTTP. Partitions defined here are never started: this file
// tests the API surface; starting partitions is tested end to end in
// cmd/vmms.
type apiServer struct {
	t     *testing.T
	url   string
	token string
	svc   *root.Service
	dir   string
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	svc, err := root.New(root.Config{StateDir: dir, Registerer: reg, WorkerPath: "/bin/false"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := wmiapi.NewHandler(wmiapi.ServerConfig{Backend: svc, Token: svc.Token(), Registerer: reg,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(func() { ts.Close(); svc.Close() })
	return &apiServer{t: t, url: ts.URL, token: svc.Token(), svc: svc, dir: dir}
}

// do sends a request and returns status and body.
func (a *apiServer) do(method, path, token string, body []byte) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, bytes.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (a *apiServer) define(name string, memMB, cpus uint64) (int, []byte) {
	body := fmt.Sprintf(`{"SystemSettings":{"ElementName":%q},"ResourceSettings":[{"ResourceType":4,"VirtualQuantity":%d},{"ResourceType":3,"VirtualQuantity":%d}]}`, name, memMB, cpus)
	return a.do("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem", a.token, []byte(body))
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e wmiapi.Error
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error body %q is not an Error: %v", body, err)
	}
	return e.Error.Code
}

func TestBadInput(t *testing.T) {
	a := newAPIServer(t)
	if code, b := a.define("existing", 64, 1); code != 201 {
		t.Fatalf("define: %d %s", code, b)
	}
	if code, b := a.do("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem", a.token,
		[]byte(`{"SystemSettings":{"ElementName":"gen2","VirtualSystemSubType":"Microsoft:Hyper-V:SubType:2"}}`)); code != 201 {
		t.Fatalf("define gen2: %d %s", code, b)
	}
	define := wmiapi.Prefix + "/Msvm_VirtualSystemManagementService/DefineSystem"
	addKVP := wmiapi.Prefix + "/Msvm_VirtualSystemManagementService/AddKvpItems"
	big := append([]byte(`{"SystemSettings":{"ElementName":"`), bytes.Repeat([]byte("a"), wmiapi.MaxBody)...)
	big = append(big, `"}}`...)
	defineBody := func(name string, mem, cpus uint64) []byte {
		return fmt.Appendf(nil, `{"SystemSettings":{"ElementName":%q},"ResourceSettings":[{"ResourceType":4,"VirtualQuantity":%d},{"ResourceType":3,"VirtualQuantity":%d}]}`, name, mem, cpus)
	}
	cases := []struct {
		name, method, path, token string
		body                      []byte
		status                    int
		code                      string
	}{
		{"malformed JSON", "POST", define, a.token, []byte(`{"SystemSettings":`), 400, wmiapi.CodeBadJSON},
		{"KVP for a Generation 1 partition", "POST", addKVP, a.token, []byte(`{"TargetSystem":"existing","DataItems":[{"Name":"a","Data":"b"}]}`), 422, wmiapi.CodeNotSupported},
		{"KVP item without a name", "POST", addKVP, a.token, []byte(`{"TargetSystem":"gen2","DataItems":[{"Name":"","Data":"b"}]}`), 422, wmiapi.CodeInvalid},
		{"KVP name with NUL", "POST", addKVP, a.token, []byte(`{"TargetSystem":"gen2","DataItems":[{"Name":"a\u0000b","Data":"b"}]}`), 422, wmiapi.CodeInvalid},
		{"KVP data too long", "POST", addKVP, a.token, fmt.Appendf(nil, `{"TargetSystem":"gen2","DataItems":[{"Name":"a","Data":%q}]}`, strings.Repeat("d", 1024)), 422, wmiapi.CodeInvalid},
		{"KVP item from the guest", "POST", addKVP, a.token, []byte(`{"TargetSystem":"gen2","DataItems":[{"Name":"a","Data":"b","Source":1}]}`), 422, wmiapi.CodeInvalid},
		{"no KVP items", "POST", addKVP, a.token, []byte(`{"TargetSystem":"gen2","DataItems":[]}`), 422, wmiapi.CodeInvalid},
		{"remove a KVP item never added", "POST", wmiapi.Prefix + "/Msvm_VirtualSystemManagementService/RemoveKvpItems", a.token, []byte(`{"TargetSystem":"gen2","DataItems":[{"Name":"never"}]}`), 404, wmiapi.CodeNotFound},
		{"shut down a partition that is off", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/gen2/Msvm_ShutdownComponent/InitiateShutdown", a.token, []byte(`{"Force":false,"Reason":"x"}`), 409, wmiapi.CodeInvalidState},
		{"shut down with a 2048-character reason", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/gen2/Msvm_ShutdownComponent/InitiateShutdown", a.token, fmt.Appendf(nil, `{"Reason":%q}`, strings.Repeat("r", 2048)), 422, wmiapi.CodeInvalid},
		{"shut down a Generation 1 partition through the IC", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/existing/Msvm_ShutdownComponent/InitiateShutdown", a.token, []byte(`{}`), 422, wmiapi.CodeNotSupported},
		{"not an object", "POST", define, a.token, []byte(`[1,2,3]`), 400, wmiapi.CodeBadJSON},
		{"two objects", "POST", define, a.token, []byte(`{} {}`), 400, wmiapi.CodeBadJSON},
		{"trailing bracket", "POST", define, a.token, []byte(`{"SystemSettings":{"ElementName":"tb"}}}`), 400, wmiapi.CodeBadJSON},
		{"GUID-shaped name", "POST", define, a.token, defineBody("16D1EF0B-91FC-4CFE-89B7-736F3D4C3661", 64, 1), 422, wmiapi.CodeInvalid},
		{"start a Generation 2 partition", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/gen2/RequestStateChange", a.token, []byte(`{"RequestedState":2}`), 422, wmiapi.CodeNotSupported},
		{"unknown field", "POST", define, a.token, []byte(`{"SystemSettings":{"ElementName":"x","Colour":"red"}}`), 400, wmiapi.CodeUnknownField},
		{"oversized body", "POST", define, a.token, big, 413, wmiapi.CodeTooLarge},
		{"no token", "GET", wmiapi.Prefix + "/Msvm_ComputerSystem", "", nil, 401, wmiapi.CodeUnauthorized},
		{"wrong token", "GET", wmiapi.Prefix + "/Msvm_ComputerSystem", strings.Repeat("0", 64), nil, 401, wmiapi.CodeUnauthorized},
		{"wrong token on a write", "POST", define, "nope", defineBody("sneaky", 64, 1), 401, wmiapi.CodeUnauthorized},
		{"slash in name", "POST", define, a.token, defineBody("../etc", 64, 1), 422, wmiapi.CodeInvalid},
		{"dot-dot name", "POST", define, a.token, defineBody("..", 64, 1), 422, wmiapi.CodeInvalid},
		{"NUL in name", "POST", define, a.token, []byte(`{"SystemSettings":{"ElementName":"a\u0000b"}}`), 422, wmiapi.CodeInvalid},
		{"empty name", "POST", define, a.token, defineBody("", 64, 1), 422, wmiapi.CodeInvalid},
		{"long name", "POST", define, a.token, defineBody(strings.Repeat("n", 65), 64, 1), 422, wmiapi.CodeInvalid},
		{"memory 0", "POST", define, a.token, defineBody("m0", 0, 1), 422, wmiapi.CodeInvalid},
		{"memory beyond the host", "POST", define, a.token, defineBody("mbig", 1<<30, 1), 422, wmiapi.CodeInvalid},
		{"10,000 vCPUs", "POST", define, a.token, defineBody("cpus", 64, 10000), 422, wmiapi.CodeInvalid},
		{"0 vCPUs", "POST", define, a.token, defineBody("cpus0", 64, 0), 422, wmiapi.CodeInvalid},
		{"duplicate name", "POST", define, a.token, defineBody("existing", 64, 1), 409, wmiapi.CodeConflict},
		{"duplicate name, other case", "POST", define, a.token, defineBody("EXISTING", 64, 1), 409, wmiapi.CodeConflict},
		{"unknown resource type", "POST", define, a.token, []byte(`{"SystemSettings":{"ElementName":"r"},"ResourceSettings":[{"ResourceType":99}]}`), 422, wmiapi.CodeInvalid},
		{"relative disk path", "POST", define, a.token, []byte(`{"SystemSettings":{"ElementName":"d"},"ResourceSettings":[{"ResourceType":31,"HostResource":["disk.img"]}]}`), 422, wmiapi.CodeInvalid},
		{"missing disk", "POST", define, a.token, []byte(`{"SystemSettings":{"ElementName":"d"},"ResourceSettings":[{"ResourceType":31,"HostResource":["/nonexistent/disk.img"]}]}`), 422, wmiapi.CodeInvalid},
		{"bad subtype", "POST", define, a.token, []byte(`{"SystemSettings":{"ElementName":"g","VirtualSystemSubType":"Microsoft:Hyper-V:SubType:3"}}`), 422, wmiapi.CodeInvalid},
		{"unknown partition", "GET", wmiapi.Prefix + "/Msvm_ComputerSystem/nobody", a.token, nil, 404, wmiapi.CodeNotFound},
		{"unknown job", "GET", wmiapi.Prefix + "/Msvm_ConcreteJob/nothing", a.token, nil, 404, wmiapi.CodeNotFound},
		{"unknown route", "GET", wmiapi.Prefix + "/Msvm_Nothing", a.token, nil, 404, wmiapi.CodeNotFound},
		{"wrong method", "DELETE", wmiapi.Prefix + "/Msvm_ComputerSystem", a.token, nil, 405, wmiapi.CodeMethodNotAllowed},
		{"pause while off", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/existing/RequestStateChange", a.token, []byte(`{"RequestedState":9}`), 409, wmiapi.CodeInvalidState},
		{"turn off while off", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/existing/RequestStateChange", a.token, []byte(`{"RequestedState":3}`), 409, wmiapi.CodeInvalidState},
		{"shut down while off", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/existing/RequestStateChange", a.token, []byte(`{"RequestedState":4}`), 409, wmiapi.CodeInvalidState},
		{"unknown requested state", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/existing/RequestStateChange", a.token, []byte(`{"RequestedState":7}`), 422, wmiapi.CodeInvalid},
		{"save", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/existing/RequestStateChange", a.token, []byte(`{"RequestedState":6}`), 422, wmiapi.CodeNotSupported},
		{"negative state", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/existing/RequestStateChange", a.token, []byte(`{"RequestedState":-1}`), 400, wmiapi.CodeBadJSON},
		{"bad console cursor", "GET", wmiapi.Prefix + "/Msvm_ComputerSystem/existing/console?cursor=-3", a.token, nil, 422, wmiapi.CodeInvalid},
		{"console input while off", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/existing/console", a.token, []byte("hi"), 409, wmiapi.CodeInvalidState},
		{"console input too large", "POST", wmiapi.Prefix + "/Msvm_ComputerSystem/existing/console", a.token, make([]byte, wmiapi.MaxConsoleIn+1), 413, wmiapi.CodeTooLarge},
		{"destroy unknown", "POST", wmiapi.Prefix + "/Msvm_VirtualSystemManagementService/DestroySystem", a.token, []byte(`{"AffectedSystem":"ghost"}`), 404, wmiapi.CodeNotFound},
		{"remove the memory", "POST", wmiapi.Prefix + "/Msvm_VirtualSystemManagementService/RemoveResourceSettings", a.token, []byte(`{"ResourceSettings":["Microsoft:not-a-guid"]}`), 422, wmiapi.CodeInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := a.do(c.method, c.path, c.token, c.body)
			if status != c.status {
				t.Fatalf("status %d, want %d; body %s", status, c.status, body)
			}
			if got := errorCode(t, body); got != c.code {
				t.Fatalf("code %q, want %q; body %s", got, c.code, body)
			}
		})
	}
	// Nothing that was refused was defined.
	status, body := a.do("GET", wmiapi.Prefix+"/Msvm_ComputerSystem", a.token, nil)
	var list []wmiapi.ComputerSystem
	if err := json.Unmarshal(body, &list); status != 200 || err != nil || len(list) != 2 || list[0].ElementName != "existing" {
		t.Fatalf("after the bad requests: %d %s", status, body)
	}
	files, _ := filepath.Glob(filepath.Join(a.dir, "partitions", "*"))
	if len(files) != 2 {
		t.Fatalf("state directory holds %v, want one definition", files)
	}
}

// TestOneServicePerStateDirectory: a second service on the same state
// directory is refused; it would reap the first one's workers.
func TestOneServicePerStateDirectory(t *testing.T) {
	a := newAPIServer(t)
	if svc, err := root.New(root.Config{StateDir: a.dir, WorkerPath: "/bin/false"}); err == nil {
		svc.Close()
		t.Fatal("a second service took the same state directory")
	} else if !strings.Contains(err.Error(), "in use by another vmms") {
		t.Fatalf("error %v", err)
	}
}

func TestOpenRoutesNeedNoToken(t *testing.T) {
	a := newAPIServer(t)
	if status, body := a.do("GET", "/healthz", "", nil); status != 200 || !strings.Contains(string(body), "ok") {
		t.Fatalf("healthz: %d %s", status, body)
	}
	if status, body := a.do("GET", "/metrics", "", nil); status != 200 || !strings.Contains(string(body), "partita_partitions") {
		t.Fatalf("metrics: %d %.200s", status, body)
	}
}

// TestDefinitionsRoundTrip: define, modify, add and remove resources,
// restart the service on the same directory, destroy.
func TestDefinitionsRoundTrip(t *testing.T) {
	a := newAPIServer(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	status, body := a.define("db", 128, 2)
	if status != 201 {
		t.Fatalf("define: %d %s", status, body)
	}
	var res wmiapi.DefineSystemResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	id := res.ResultingSystem.Name
	add := fmt.Sprintf(`{"AffectedConfiguration":%q,"ResourceSettings":[{"ResourceType":31,"HostResource":[%q]},{"ResourceType":33,"HostResource":["lan"],"Address":"00:15:5d:00:00:01"}]}`, "db", img)
	status, body = a.do("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/AddResourceSettings", a.token, []byte(add))
	if status != 200 {
		t.Fatalf("add: %d %s", status, body)
	}
	var added wmiapi.ResourceSettingsResult
	json.Unmarshal(body, &added)
	if len(added.ResultingResourceSettings) != 2 {
		t.Fatalf("add returned %s", body)
	}
	mod := fmt.Sprintf(`{"ResourceSettings":[{"InstanceID":%q,"ResourceType":4,"VirtualQuantity":256}]}`, res.ResultingResourceSettings[1].InstanceID)
	if status, body = a.do("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/ModifyResourceSettings", a.token, []byte(mod)); status != 200 {
		t.Fatalf("modify: %d %s", status, body)
	}
	rename := fmt.Sprintf(`{"SystemSettings":{"InstanceID":"Microsoft:%s","ElementName":"db2"}}`, id)
	if status, body = a.do("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/ModifySystemSettings", a.token, []byte(rename)); status != 200 {
		t.Fatalf("rename: %d %s", status, body)
	}
	rm := fmt.Sprintf(`{"ResourceSettings":[%q]}`, added.ResultingResourceSettings[1].InstanceID)
	if status, body = a.do("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/RemoveResourceSettings", a.token, []byte(rm)); status != 200 {
		t.Fatalf("remove: %d %s", status, body)
	}

	// A second service on the same directory sees the same definition.
	a.svc.Close()
	svc2, err := root.New(root.Config{StateDir: a.dir, WorkerPath: "/bin/false"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc2.Close()
	cs, err := svc2.GetSystem(id)
	if err != nil || cs.ElementName != "db2" || cs.MemoryMB != 256 || cs.Processors != 2 || cs.EnabledState != wmiapi.StateOff {
		t.Fatalf("after restart: %+v, %v", cs, err)
	}
	st, err := svc2.GetSettings("db2")
	if err != nil || len(st.ResourceSettings) != 3 || st.ResourceSettings[2].HostResource[0] != img {
		t.Fatalf("settings after restart: %+v, %v", st, err)
	}
	if err := svc2.DestroySystem("db2"); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(a.dir, "partitions", "*")); len(files) != 0 {
		t.Fatalf("after destroy: %v", files)
	}
}

// TestConcurrentDefines: 32 goroutines race to define the same names;
// each name is defined exactly once.
func TestConcurrentDefines(t *testing.T) {
	a := newAPIServer(t)
	var mu sync.Mutex
	created := map[string]int{}
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 8; i++ {
				name := fmt.Sprintf("p%d", i)
				status, body := a.define(name, 64, 1)
				switch status {
				case 201:
					mu.Lock()
					created[name]++
					mu.Unlock()
				case 409:
				default:
					t.Errorf("define %s: %d %s", name, status, body)
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 8; i++ {
		if n := created[fmt.Sprintf("p%d", i)]; n != 1 {
			t.Errorf("p%d defined %d times", i, n)
		}
	}
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	a := newAPIServer(t)
	status, body := a.do("GET", wmiapi.Prefix+"/openapi.json", a.token, nil)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %v", err)
	}
	for _, want := range []string{"get /healthz", "get /metrics", "get /api/v2/Msvm_ComputerSystem", "get /api/v2/Msvm_ComputerSystem/{system}",
		"post /api/v2/Msvm_ComputerSystem/{system}/RequestStateChange", "get /api/v2/Msvm_ComputerSystem/{system}/console",
		"post /api/v2/Msvm_ComputerSystem/{system}/console", "post /api/v2/Msvm_VirtualSystemManagementService/DefineSystem",
		"post /api/v2/Msvm_VirtualSystemManagementService/DestroySystem", "post /api/v2/Msvm_VirtualSystemManagementService/ModifySystemSettings",
		"post /api/v2/Msvm_VirtualSystemManagementService/AddResourceSettings", "post /api/v2/Msvm_VirtualSystemManagementService/ModifyResourceSettings",
		"post /api/v2/Msvm_VirtualSystemManagementService/RemoveResourceSettings", "get /api/v2/Msvm_ConcreteJob", "get /api/v2/Msvm_ConcreteJob/{job}",
		"get /api/v2/openapi.json"} {
		method, path, _ := strings.Cut(want, " ")
		if doc.Paths[path][method] == nil {
			t.Errorf("OpenAPI lacks %s", want)
		}
	}
}

// TestHostKVPItemsPersist: host KVP items of a partition that is off are
// kept with its definition, listed by Msvm_KvpExchangeComponent, removed
// by name, and still there after a restart of the service. Its heartbeat
// reads no contact.
func TestHostKVPItemsPersist(t *testing.T) {
	a := newAPIServer(t)
	if code, b := a.do("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem", a.token,
		[]byte(`{"SystemSettings":{"ElementName":"kv","VirtualSystemSubType":"Microsoft:Hyper-V:SubType:2"}}`)); code != 201 {
		t.Fatalf("define: %d %s", code, b)
	}
	if code, b := a.do("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/AddKvpItems", a.token,
		[]byte(`{"TargetSystem":"kv","DataItems":[{"Name":"Keep","Data":"kept ✓"},{"Name":"Drop","Data":"x"}]}`)); code != 200 {
		t.Fatalf("add: %d %s", code, b)
	}
	if code, b := a.do("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/RemoveKvpItems", a.token,
		[]byte(`{"TargetSystem":"kv","DataItems":[{"Name":"Drop"}]}`)); code != 200 {
		t.Fatalf("remove: %d %s", code, b)
	}
	a.svc.Close() // the lock goes; a second service reads the same directory
	svc3, err := root.New(root.Config{StateDir: a.dir, WorkerPath: "/bin/false"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc3.Close()
	k, err := svc3.KvpExchange("kv")
	if err != nil {
		t.Fatal(err)
	}
	if len(k.HostExchangeItems) != 1 || k.HostExchangeItems[0] != (wmiapi.KvpExchangeDataItem{Name: "Keep", Data: "kept ✓", Source: wmiapi.KvpSourceHost}) ||
		len(k.GuestExchangeItems) != 0 {
		t.Errorf("after a restart: %+v", k)
	}
	h, err := svc3.Heartbeat("kv")
	if err != nil || h.OperationalStatus[0] != wmiapi.StatusNoContact {
		t.Errorf("heartbeat of a partition that is off: %+v %v", h, err)
	}
}
