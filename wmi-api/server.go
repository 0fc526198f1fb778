package wmiapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Backend is what the API serves: the root service. Errors that are a
// *Fault carry their code; any other error is an internal one.
type Backend interface {
	ListSystems() []ComputerSystem
	GetSystem(name string) (ComputerSystem, error)
	GetSettings(name string) (SystemSettings, error)
	RequestStateChange(name string, state uint16) (ConcreteJob, error)
	DefineSystem(DefineSystemRequest) (DefineSystemResult, error)
	DestroySystem(name string) error
	ModifySystemSettings(VirtualSystemSettingData) error
	AddResourceSettings(target string, rs []ResourceSettingData) ([]ResourceSettingData, error)
	ModifyResourceSettings(rs []ResourceSettingData) ([]ResourceSettingData, error)
	RemoveResourceSettings(ids []string) error
	ListJobs() []ConcreteJob
	GetJob(id string) (ConcreteJob, error)
	ConsoleOf(name string) (ConsoleSource, error)
	SendConsole(name string, data []byte) error
	Heartbeat(name string) (HeartbeatComponent, error)
	InitiateShutdown(name string, req ShutdownRequest) error
	KvpExchange(name string) (KvpExchangeComponent, error)
	AddKvpItems(target string, items []KvpExchangeDataItem) error
	RemoveKvpItems(target string, names []string) error
}

// ConsoleSource is a partition's console output, addressed by cursors.
type ConsoleSource interface {
	Read(cursor uint64, max int) (data []byte, start, next uint64)
	Follow(ctx context.Context, cursor uint64, max int) (data []byte, start, next uint64, ok bool)
}

// Limits on requests.
const (
	MaxBody        = 1 << 20  // JSON bodies
	MaxConsoleIn   = 64 << 10 // one console POST
	maxConsoleRead = 1 << 20  // one console GET without follow
)

// ServerConfig configures the HTTP handler.
type ServerConfig struct {
	Backend    Backend
	Token      string
	Logger     hclog.Logger
	Registerer prometheus.Registerer // request metrics go here; nil: none
	Metrics    http.Handler          // served at /metrics; nil: 404
}

// server holds the handler's state.
type server struct {
	cfg      ServerConfig
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	systems  systemCache
}

// NewHandler builds the API's HTTP handler.
func NewHandler(cfg ServerConfig) (http.Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	s := &server{cfg: cfg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "partita_api_requests_total",
			Help: "API requests, by route template, method and status code."}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "partita_api_request_duration_seconds",
			Help:    "API request latency, by route template and method (console follow streams excluded).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}},
			[]string{"route", "method"}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.requests, s.latency} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	r := mux.NewRouter()
	r.NotFoundHandler = s.wrap("unmatched", false, func(w http.ResponseWriter, r *http.Request) error {
		return &Fault{Code: CodeNotFound, Message: "no route " + r.URL.Path}
	})
	r.MethodNotAllowedHandler = s.wrap("unmatched", false, func(w http.ResponseWriter, r *http.Request) error {
		return &Fault{Code: CodeMethodNotAllowed, Message: r.Method + " is not allowed on " + r.URL.Path}
	})
	for _, rt := range routes {
		h := s.wrap(rt.path, !rt.open, s.handlerFor(rt))
		r.Handle(rt.path, h).Methods(rt.method)
	}
	return r, nil
}

// route is one API route; its handler, documentation and schema names
// live together so that the OpenAPI document cannot drift from them.
type route struct {
	method, path string
	open         bool // no token needed
	summary      string
	in, out      string // schema names for OpenAPI ("" none; "bytes" raw)
	status       int    // success status
	handle       func(s *server, w http.ResponseWriter, r *http.Request) error
}

func (s *server) handlerFor(rt route) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error { return rt.handle(s, w, r) }
}

// statusRecorder notes the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// wrap adds authentication, error rendering, metrics and logging.
func (s *server) wrap(name string, auth bool, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		var err error
		if auth && !s.authorized(r) {
			err = &Fault{Code: CodeUnauthorized, Message: "missing or wrong bearer token"}
		} else {
			err = h(rec, r)
		}
		if err != nil {
			s.writeError(rec, err)
		}
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		s.requests.WithLabelValues(name, r.Method, strconv.Itoa(code)).Inc()
		if !strings.HasSuffix(name, "/console") || r.Method != http.MethodGet {
			s.latency.WithLabelValues(name, r.Method).Observe(time.Since(start).Seconds())
		}
		if code >= 500 {
			s.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "code", code, "error", err)
		} else {
			s.cfg.Logger.Debug("request", "method", r.Method, "path", r.URL.Path, "code", code)
		}
	})
}

func (s *server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return ok && s.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.Token)) == 1
}

// StatusOf maps an error code to its HTTP status.
func StatusOf(code string) int {
	switch code {
	case CodeBadJSON, CodeUnknownField:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeConflict, CodeInvalidState:
		return http.StatusConflict
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeInvalid, CodeNotSupported:
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

func (s *server) writeError(w http.ResponseWriter, err error) {
	var f *Fault
	if !errors.As(err, &f) {
		f = &Fault{Code: CodeInternal, Message: err.Error()}
	}
	if f.Code == CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="partita"`)
	}
	writeJSON(w, StatusOf(f.Code), Error{Error: ErrorDetail{Code: f.Code, Message: f.Message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// decode reads a JSON body strictly: at most MaxBody bytes, one object,
// no unknown fields, nothing after it.
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return &Fault{Code: CodeBadJSON, Message: "reading the body: " + err.Error()}
	}
	if len(body) > MaxBody {
		return &Fault{Code: CodeTooLarge, Message: fmt.Sprintf("body larger than %d bytes", MaxBody)}
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return &Fault{Code: CodeUnknownField, Message: err.Error()}
		}
		return &Fault{Code: CodeBadJSON, Message: "malformed JSON: " + err.Error()}
	}
	if _, err := d.Token(); err != io.EOF {
		return &Fault{Code: CodeBadJSON, Message: "malformed JSON: data after the object"}
	}
	return nil
}

// ok writes a success body.
func ok(status int) func(w http.ResponseWriter, v any) error {
	return func(w http.ResponseWriter, v any) error { return writeJSON(w, status, v) }
}

var (
	ok200 = ok(http.StatusOK)
)

// routes is the whole API (set in init: the OpenAPI route reads it).
var routes []route

func init() {
	routes = []route{
		{method: "GET", path: "/healthz", open: true, summary: "Liveness: 200 while the service runs.", out: "Health", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				return ok200(w, map[string]string{"status": "ok"})
			}},
		{method: "GET", path: "/metrics", open: true, summary: "Prometheus metrics (text exposition format).", out: "text", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				if s.cfg.Metrics == nil {
					return &Fault{Code: CodeNotFound, Message: "metrics are not enabled"}
				}
				s.cfg.Metrics.ServeHTTP(w, r)
				return nil
			}},
		{method: "GET", path: Prefix + "/openapi.json", summary: "This API's OpenAPI 3 document.", out: "object", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				return ok200(w, OpenAPI())
			}},
		{method: "GET", path: Prefix + "/Msvm_ComputerSystem", summary: "List partitions.", out: "[]ComputerSystem", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				parts, err := s.systems.encodeList(s.cfg.Backend.ListSystems())
				if err != nil {
					return err
				}
				return ignoreClientGone(writeList(w, parts))
			}},
		{method: "GET", path: Prefix + "/Msvm_ComputerSystem/{system}", summary: "Get one partition by Name (GUID) or ElementName.", out: "ComputerSystem", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				cs, err := s.cfg.Backend.GetSystem(mux.Vars(r)["system"])
				if err != nil {
					return err
				}
				return ok200(w, cs)
			}},
		{method: "GET", path: Prefix + "/Msvm_ComputerSystem/{system}/settings", summary: "A partition's settings: Msvm_VirtualSystemSettingData and its resource settings.", out: "SystemSettings", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				st, err := s.cfg.Backend.GetSettings(mux.Vars(r)["system"])
				if err != nil {
					return err
				}
				return ok200(w, st)
			}},
		{method: "POST", path: Prefix + "/Msvm_ComputerSystem/{system}/RequestStateChange", summary: "Change a partition's state; returns the Msvm_ConcreteJob doing it (ReturnValue 4096).", in: "StateChangeRequest", out: "StateChangeResult", status: 202,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				var req StateChangeRequest
				if err := decode(r, &req); err != nil {
					return err
				}
				j, err := s.cfg.Backend.RequestStateChange(mux.Vars(r)["system"], req.RequestedState)
				if err != nil {
					return err
				}
				w.Header().Set("Location", Prefix+"/Msvm_ConcreteJob/"+j.InstanceID)
				return writeJSON(w, http.StatusAccepted, StateChangeResult{ReturnValue: ReturnJobStarted, Job: j})
			}},
		{method: "GET", path: Prefix + "/Msvm_ComputerSystem/{system}/console", summary: "COM1 output from ?cursor=N (default 0) as application/octet-stream; X-Console-Start and X-Console-Cursor say which bytes came. With ?follow=true the response streams until the partition stops or the client leaves.", out: "bytes", status: 200,
			handle: (*server).consoleGet},
		{method: "POST", path: Prefix + "/Msvm_ComputerSystem/{system}/console", summary: "Send the body's bytes (at most 64 KiB) to the guest's COM1.", in: "bytes", status: 204,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				data, err := io.ReadAll(io.LimitReader(r.Body, MaxConsoleIn+1))
				if err != nil {
					return &Fault{Code: CodeBadJSON, Message: "reading the body: " + err.Error()}
				}
				if len(data) > MaxConsoleIn {
					return &Fault{Code: CodeTooLarge, Message: fmt.Sprintf("console input larger than %d bytes", MaxConsoleIn)}
				}
				if err := s.cfg.Backend.SendConsole(mux.Vars(r)["system"], data); err != nil {
					return err
				}
				w.WriteHeader(http.StatusNoContent)
				return nil
			}},
		{method: "GET", path: Prefix + "/Msvm_ComputerSystem/{system}/Msvm_HeartbeatComponent", summary: "Whether the guest's heartbeat integration service answers (Generation 2).", out: "HeartbeatComponent", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				h, err := s.cfg.Backend.Heartbeat(mux.Vars(r)["system"])
				if err != nil {
					return err
				}
				return ok200(w, h)
			}},
		{method: "POST", path: Prefix + "/Msvm_ComputerSystem/{system}/Msvm_ShutdownComponent/InitiateShutdown", summary: "Ask the guest to shut down through its shutdown integration service; answered once the guest accepts (ReturnValue 0). The partition turns Off when the guest has shut down.", in: "ShutdownRequest", out: "MethodResult", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				var req ShutdownRequest
				if err := decode(r, &req); err != nil {
					return err
				}
				if err := s.cfg.Backend.InitiateShutdown(mux.Vars(r)["system"], req); err != nil {
					return err
				}
				return ok200(w, MethodResult{ReturnValue: ReturnCompleted})
			}},
		{method: "GET", path: Prefix + "/Msvm_ComputerSystem/{system}/Msvm_KvpExchangeComponent", summary: "Key-value pairs: the guest's (read from it now) and the host's.", out: "KvpExchangeComponent", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				k, err := s.cfg.Backend.KvpExchange(mux.Vars(r)["system"])
				if err != nil {
					return err
				}
				return ok200(w, k)
			}},
		{method: "POST", path: Prefix + "/Msvm_VirtualSystemManagementService/AddKvpItems", summary: "Add or replace host key-value pairs of a partition; a running guest gets them at once.", in: "KvpItemsRequest", out: "MethodResult", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				var req KvpItemsRequest
				if err := decode(r, &req); err != nil {
					return err
				}
				if err := s.cfg.Backend.AddKvpItems(req.TargetSystem, req.DataItems); err != nil {
					return err
				}
				return ok200(w, MethodResult{ReturnValue: ReturnCompleted})
			}},
		{method: "POST", path: Prefix + "/Msvm_VirtualSystemManagementService/RemoveKvpItems", summary: "Remove host key-value pairs of a partition, by Name.", in: "KvpItemsRequest", out: "MethodResult", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				var req KvpItemsRequest
				if err := decode(r, &req); err != nil {
					return err
				}
				names := make([]string, len(req.DataItems))
				for i, it := range req.DataItems {
					names[i] = it.Name
				}
				if err := s.cfg.Backend.RemoveKvpItems(req.TargetSystem, names); err != nil {
					return err
				}
				return ok200(w, MethodResult{ReturnValue: ReturnCompleted})
			}},
		{method: "POST", path: Prefix + "/Msvm_VirtualSystemManagementService/DefineSystem", summary: "Define a partition.", in: "DefineSystemRequest", out: "DefineSystemResult", status: 201,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				var req DefineSystemRequest
				if err := decode(r, &req); err != nil {
					return err
				}
				res, err := s.cfg.Backend.DefineSystem(req)
				if err != nil {
					return err
				}
				w.Header().Set("Location", Prefix+"/Msvm_ComputerSystem/"+res.ResultingSystem.Name)
				return writeJSON(w, http.StatusCreated, res)
			}},
		{method: "POST", path: Prefix + "/Msvm_VirtualSystemManagementService/DestroySystem", summary: "Delete an Off partition's definition (its disk images stay).", in: "DestroySystemRequest", out: "MethodResult", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				var req DestroySystemRequest
				if err := decode(r, &req); err != nil {
					return err
				}
				if err := s.cfg.Backend.DestroySystem(req.AffectedSystem); err != nil {
					return err
				}
				return ok200(w, MethodResult{ReturnValue: ReturnCompleted})
			}},
		{method: "POST", path: Prefix + "/Msvm_VirtualSystemManagementService/ModifySystemSettings", summary: "Change an Off partition's name or boot files.", in: "ModifySystemSettingsRequest", out: "MethodResult", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				var req ModifySystemSettingsRequest
				if err := decode(r, &req); err != nil {
					return err
				}
				if err := s.cfg.Backend.ModifySystemSettings(req.SystemSettings); err != nil {
					return err
				}
				return ok200(w, MethodResult{ReturnValue: ReturnCompleted})
			}},
		{method: "POST", path: Prefix + "/Msvm_VirtualSystemManagementService/AddResourceSettings", summary: "Add disks or Ethernet connections to an Off partition.", in: "AddResourceSettingsRequest", out: "ResourceSettingsResult", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				var req AddResourceSettingsRequest
				if err := decode(r, &req); err != nil {
					return err
				}
				rs, err := s.cfg.Backend.AddResourceSettings(req.AffectedConfiguration, req.ResourceSettings)
				if err != nil {
					return err
				}
				return ok200(w, ResourceSettingsResult{ReturnValue: ReturnCompleted, ResultingResourceSettings: rs})
			}},
		{method: "POST", path: Prefix + "/Msvm_VirtualSystemManagementService/ModifyResourceSettings", summary: "Change resources of an Off partition, named by InstanceID.", in: "ModifyResourceSettingsRequest", out: "ResourceSettingsResult", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				var req ModifyResourceSettingsRequest
				if err := decode(r, &req); err != nil {
					return err
				}
				rs, err := s.cfg.Backend.ModifyResourceSettings(req.ResourceSettings)
				if err != nil {
					return err
				}
				return ok200(w, ResourceSettingsResult{ReturnValue: ReturnCompleted, ResultingResourceSettings: rs})
			}},
		{method: "POST", path: Prefix + "/Msvm_VirtualSystemManagementService/RemoveResourceSettings", summary: "Remove disks or Ethernet connections of an Off partition.", in: "RemoveResourceSettingsRequest", out: "MethodResult", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				var req RemoveResourceSettingsRequest
				if err := decode(r, &req); err != nil {
					return err
				}
				if err := s.cfg.Backend.RemoveResourceSettings(req.ResourceSettings); err != nil {
					return err
				}
				return ok200(w, MethodResult{ReturnValue: ReturnCompleted})
			}},
		{method: "GET", path: Prefix + "/Msvm_ConcreteJob", summary: "List jobs, newest first.", out: "[]ConcreteJob", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				return ok200(w, s.cfg.Backend.ListJobs())
			}},
		{method: "GET", path: Prefix + "/Msvm_ConcreteJob/{job}", summary: "Get one job.", out: "ConcreteJob", status: 200,
			handle: func(s *server, w http.ResponseWriter, r *http.Request) error {
				j, err := s.cfg.Backend.GetJob(mux.Vars(r)["job"])
				if err != nil {
					return err
				}
				return ok200(w, j)
			}},
	}
}

// consoleGet serves console output, once or following.
func (s *server) consoleGet(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var cursor uint64
	if c := q.Get("cursor"); c != "" {
		var err error
		if cursor, err = strconv.ParseUint(c, 10, 64); err != nil {
			return &Fault{Code: CodeInvalid, Message: fmt.Sprintf("cursor %q is not a non-negative integer", c)}
		}
	}
	follow := false
	if f := q.Get("follow"); f != "" {
		var err error
		if follow, err = strconv.ParseBool(f); err != nil {
			return &Fault{Code: CodeInvalid, Message: fmt.Sprintf("follow %q: want true or false", f)}
		}
	}
	con, err := s.cfg.Backend.ConsoleOf(mux.Vars(r)["system"])
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !follow {
		data, start, next := con.Read(cursor, maxConsoleRead)
		w.Header().Set(ConsoleStartHeader, strconv.FormatUint(start, 10))
		w.Header().Set(ConsoleCursorHeader, strconv.FormatUint(next, 10))
		w.WriteHeader(http.StatusOK)
		_, err := w.Write(data)
		return ignoreClientGone(err)
	}
	// Streaming: the headers say where the stream starts (sent at once,
	// before any output); the cursor after it is that plus the bytes
	// received.
	_, start, _ := con.Read(cursor, 0)
	w.Header().Set(ConsoleStartHeader, strconv.FormatUint(start, 10))
	w.Header().Set(ConsoleCursorHeader, strconv.FormatUint(start, 10))
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	next := start
	for {
		data, _, n, more := con.Follow(r.Context(), next, 64<<10)
		if !more {
			break
		}
		next = n
		if _, err := w.Write(data); err != nil {
			return ignoreClientGone(err)
		}
		if fl != nil {
			fl.Flush()
		}
	}
	return nil
}

// ignoreClientGone: a client that hung up mid-response is not our error
// (the status is already sent).
func ignoreClientGone(error) error { return nil }
