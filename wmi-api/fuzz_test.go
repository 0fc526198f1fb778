package wmiapi_test

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/partita-hv/partita/root"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// FuzzManagementMethods posts arbitrary bodies to every method of the
// management service and to RequestStateChange: whatever the body, the
// answer is a success or a client error with an Error body, never a 5xx,
// and the service keeps working.
func FuzzManagementMethods(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/requests/*.json")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		for m := 0; m < 10; m++ {
			f.Add(uint8(m), b)
		}
	}
	svc, err := root.New(root.Config{StateDir: f.TempDir(), WorkerPath: "/bin/false"})
	if err != nil {
		f.Fatal(err)
	}
	defer svc.Close()
	h, err := wmiapi.NewHandler(wmiapi.ServerConfig{Backend: svc, Token: svc.Token()})
	if err != nil {
		f.Fatal(err)
	}
	// The partition RequestStateChange aims at exists, so the fuzzer
	// drives the state machine (its starts fail: the worker is
	// /bin/false).
	if _, err := svc.DefineSystem(wmiapi.DefineSystemRequest{SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: "fuzz"}}); err != nil {
		f.Fatal(err)
	}
	// A Generation 2 partition for the KVP methods and InitiateShutdown.
	if _, err := svc.DefineSystem(wmiapi.DefineSystemRequest{SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: "fuzz2", VirtualSystemSubType: wmiapi.SubTypeGen2}}); err != nil {
		f.Fatal(err)
	}
	paths := []string{"DefineSystem", "DestroySystem", "ModifySystemSettings", "AddResourceSettings", "ModifyResourceSettings", "RemoveResourceSettings",
		"AddKvpItems", "RemoveKvpItems"}
	f.Fuzz(func(t *testing.T, method uint8, body []byte) {
		var path string
		switch m := int(method) % 10; {
		case m < len(paths):
			path = wmiapi.Prefix + "/Msvm_VirtualSystemManagementService/" + paths[m]
		case m == len(paths):
			path = wmiapi.Prefix + "/Msvm_ComputerSystem/fuzz2/Msvm_ShutdownComponent/InitiateShutdown"
		default:
			path = wmiapi.Prefix + "/Msvm_ComputerSystem/fuzz/RequestStateChange"
		}
		r := httptest.NewRequest("POST", path, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+svc.Token())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body.Bytes())
		}
		if w.Code >= 400 && !bytes.Contains(w.Body.Bytes(), []byte(`"code"`)) {
			t.Fatalf("%s: %d without an Error body: %s", path, w.Code, w.Body.Bytes())
		}
		// The service keeps working.
		list := httptest.NewRequest("GET", wmiapi.Prefix+"/Msvm_ComputerSystem", nil)
		list.Header.Set("Authorization", "Bearer "+svc.Token())
		lw := httptest.NewRecorder()
		h.ServeHTTP(lw, list)
		if lw.Code != 200 {
			t.Fatalf("list after %s: %d %s", path, lw.Code, lw.Body.Bytes())
		}
	})
}
