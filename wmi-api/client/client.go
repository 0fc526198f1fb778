// Package client is a typed Go client for the root service's REST API (see
// package wmiapi for the routes and types).
//
//	c, err := client.New("127.0.0.1:8420", token)
//	job, err := c.RequestStateChange(ctx, "web1", wmiapi.RequestRunning)
//	job, err = c.WaitJob(ctx, job.InstanceID)
//
// Every method takes a context. An error response from the service comes
// back as an *APIError carrying its HTTP status and stable code.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// MaxResponse is the most of a response body the client reads, except a
// followed console stream.
const MaxResponse = 16 << 20

// APIError is an error response from the service.
type APIError struct {
	Status  int    // HTTP status
	Code    string // one of the wmiapi.Code constants; empty when the body was not an API error
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// IsCode reports whether err is an *APIError with the given code.
func IsCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// Client talks to one service. It is safe for concurrent use.
type Client struct {
	base  string // scheme://host, no trailing slash
	token string
	hc    *http.Client
}

// New returns a client for server, which is "http://host:port" (or
// https), "host:port", or "unix:/path/to.sock" for HTTP over a Unix
// socket. token is sent as a bearer token on every route that needs one.
func New(server, token string) (*Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	c := &Client{token: token, hc: &http.Client{Transport: tr}}
	switch {
	case strings.HasPrefix(server, "unix:"):
		path := strings.TrimPrefix(server, "unix:")
		if path == "" {
			return nil, fmt.Errorf("server %q: no socket path", server)
		}
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://unix"
	case strings.HasPrefix(server, "http://"), strings.HasPrefix(server, "https://"):
		u, err := url.Parse(server)
		if err != nil {
			return nil, fmt.Errorf("server %q: %w", server, err)
		}
		if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("server %q: want scheme://host:port", server)
		}
		c.base = u.Scheme + "://" + u.Host
	default:
		if _, _, err := net.SplitHostPort(server); err != nil {
			return nil, fmt.Errorf("server %q: want host:port, http://host:port or unix:/path", server)
		}
		c.base = "http://" + server
	}
	return c, nil
}

// Healthz checks that the service answers /healthz.
func (c *Client) Healthz(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// ListSystems returns every partition.
func (c *Client) ListSystems(ctx context.Context) ([]wmiapi.ComputerSystem, error) {
	var out []wmiapi.ComputerSystem
	err := c.do(ctx, http.MethodGet, api("Msvm_ComputerSystem"), nil, &out)
	return out, err
}

// GetSystem returns one partition, named by Name (GUID) or ElementName.
func (c *Client) GetSystem(ctx context.Context, name string) (wmiapi.ComputerSystem, error) {
	var out wmiapi.ComputerSystem
	err := c.do(ctx, http.MethodGet, api("Msvm_ComputerSystem", name), nil, &out)
	return out, err
}

// GetSettings returns a partition's definition.
func (c *Client) GetSettings(ctx context.Context, name string) (wmiapi.SystemSettings, error) {
	var out wmiapi.SystemSettings
	err := c.do(ctx, http.MethodGet, api("Msvm_ComputerSystem", name)+"/settings", nil, &out)
	return out, err
}

// RequestStateChange asks for a partition to go to state (one of the
// wmiapi.Request constants) and returns the job doing it.
func (c *Client) RequestStateChange(ctx context.Context, name string, state uint16) (wmiapi.ConcreteJob, error) {
	var out wmiapi.StateChangeResult
	err := c.do(ctx, http.MethodPost, api("Msvm_ComputerSystem", name)+"/RequestStateChange",
		wmiapi.StateChangeRequest{RequestedState: state}, &out)
	return out.Job, err
}

// GetJob returns a job by InstanceID.
func (c *Client) GetJob(ctx context.Context, id string) (wmiapi.ConcreteJob, error) {
	var out wmiapi.ConcreteJob
	err := c.do(ctx, http.MethodGet, api("Msvm_ConcreteJob", id), nil, &out)
	return out, err
}

// ListJobs returns the jobs the service remembers, newest first.
func (c *Client) ListJobs(ctx context.Context) ([]wmiapi.ConcreteJob, error) {
	var out []wmiapi.ConcreteJob
	err := c.do(ctx, http.MethodGet, api("Msvm_ConcreteJob"), nil, &out)
	return out, err
}

// JobDone reports whether a job has ended: Completed, Exception or Killed.
func JobDone(j wmiapi.ConcreteJob) bool {
	switch j.JobState {
	case wmiapi.JobCompleted, wmiapi.JobException, wmiapi.JobKilled:
		return true
	}
	return false
}

// WaitJob polls a job, with a short growing interval, until it has ended
// (see JobDone) and returns it as it ended. A job that ends in Exception
// is not an error of WaitJob's: look at its JobState and ErrorDescription.
// When ctx ends first it returns the job as last seen and ctx's error.
func (c *Client) WaitJob(ctx context.Context, id string) (wmiapi.ConcreteJob, error) {
	delay := 10 * time.Millisecond
	var last wmiapi.ConcreteJob
	for {
		j, err := c.GetJob(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return last, err
		}
		if JobDone(j) {
			return j, nil
		}
		last = j
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return last, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 250*time.Millisecond)
	}
}

// DefineSystem creates a partition.
func (c *Client) DefineSystem(ctx context.Context, req wmiapi.DefineSystemRequest) (wmiapi.DefineSystemResult, error) {
	var out wmiapi.DefineSystemResult
	err := c.do(ctx, http.MethodPost, api("Msvm_VirtualSystemManagementService", "DefineSystem"), req, &out)
	return out, err
}

// DestroySystem deletes a partition, named by Name or ElementName.
func (c *Client) DestroySystem(ctx context.Context, name string) error {
	return c.method(ctx, "DestroySystem", wmiapi.DestroySystemRequest{AffectedSystem: name})
}

// ModifySystemSettings changes the system settings of the partition whose
// InstanceID vssd carries.
func (c *Client) ModifySystemSettings(ctx context.Context, vssd wmiapi.VirtualSystemSettingData) error {
	return c.method(ctx, "ModifySystemSettings", wmiapi.ModifySystemSettingsRequest{SystemSettings: vssd})
}

// AddResourceSettings adds resources to a partition (named by its VSSD
// InstanceID, Name or ElementName) and returns them as the service
// assigned them.
func (c *Client) AddResourceSettings(ctx context.Context, system string, rs []wmiapi.ResourceSettingData) ([]wmiapi.ResourceSettingData, error) {
	var out wmiapi.ResourceSettingsResult
	err := c.do(ctx, http.MethodPost, api("Msvm_VirtualSystemManagementService", "AddResourceSettings"),
		wmiapi.AddResourceSettingsRequest{AffectedConfiguration: system, ResourceSettings: rs}, &out)
	return out.ResultingResourceSettings, err
}

// ModifyResourceSettings changes resources, each named by its InstanceID.
func (c *Client) ModifyResourceSettings(ctx context.Context, rs []wmiapi.ResourceSettingData) ([]wmiapi.ResourceSettingData, error) {
	var out wmiapi.ResourceSettingsResult
	err := c.do(ctx, http.MethodPost, api("Msvm_VirtualSystemManagementService", "ModifyResourceSettings"),
		wmiapi.ModifyResourceSettingsRequest{ResourceSettings: rs}, &out)
	return out.ResultingResourceSettings, err
}

// RemoveResourceSettings removes resources by InstanceID.
func (c *Client) RemoveResourceSettings(ctx context.Context, ids []string) error {
	return c.method(ctx, "RemoveResourceSettings", wmiapi.RemoveResourceSettingsRequest{ResourceSettings: ids})
}

// Heartbeat returns the state of a Generation 2 guest's heartbeat.
func (c *Client) Heartbeat(ctx context.Context, name string) (wmiapi.HeartbeatComponent, error) {
	var out wmiapi.HeartbeatComponent
	err := c.do(ctx, http.MethodGet, api("Msvm_ComputerSystem", name, "Msvm_HeartbeatComponent"), nil, &out)
	return out, err
}

// InitiateShutdown asks a Generation 2 guest to shut down through its
// shutdown integration service; it returns once the guest accepted.
func (c *Client) InitiateShutdown(ctx context.Context, name string, force bool, reason string) error {
	var out wmiapi.MethodResult
	if err := c.do(ctx, http.MethodPost, api("Msvm_ComputerSystem", name, "Msvm_ShutdownComponent", "InitiateShutdown"),
		wmiapi.ShutdownRequest{Force: force, Reason: reason}, &out); err != nil {
		return err
	}
	if out.ReturnValue != wmiapi.ReturnCompleted {
		return fmt.Errorf("InitiateShutdown returned %d", out.ReturnValue)
	}
	return nil
}

// KvpExchange returns a partition's key-value pairs: the guest's, read
// from it, and the host's.
func (c *Client) KvpExchange(ctx context.Context, name string) (wmiapi.KvpExchangeComponent, error) {
	var out wmiapi.KvpExchangeComponent
	err := c.do(ctx, http.MethodGet, api("Msvm_ComputerSystem", name, "Msvm_KvpExchangeComponent"), nil, &out)
	return out, err
}

// AddKvpItems adds or replaces host key-value pairs of a partition.
func (c *Client) AddKvpItems(ctx context.Context, name string, items map[string]string) error {
	req := wmiapi.KvpItemsRequest{TargetSystem: name}
	for k, v := range items {
		req.DataItems = append(req.DataItems, wmiapi.KvpExchangeDataItem{Name: k, Data: v, Source: wmiapi.KvpSourceHost})
	}
	return c.method(ctx, "AddKvpItems", req)
}

// RemoveKvpItems removes host key-value pairs of a partition by name.
func (c *Client) RemoveKvpItems(ctx context.Context, name string, keys []string) error {
	req := wmiapi.KvpItemsRequest{TargetSystem: name}
	for _, k := range keys {
		req.DataItems = append(req.DataItems, wmiapi.KvpExchangeDataItem{Name: k})
	}
	return c.method(ctx, "RemoveKvpItems", req)
}

// Console copies a partition's COM1 output from cursor to w and returns
// the cursor to ask for next. Without follow it copies what the service
// has and returns. With follow it copies the stream until the service
// ends it (the partition stopped) or ctx ends; in the latter case it
// returns ctx's error together with the cursor just past what w got.
func (c *Client) Console(ctx context.Context, name string, cursor uint64, follow bool, w io.Writer) (uint64, error) {
	q := "?cursor=" + strconv.FormatUint(cursor, 10)
	if follow {
		q += "&follow=true"
	}
	resp, err := c.send(ctx, http.MethodGet, api("Msvm_ComputerSystem", name)+"/console"+q, nil, "")
	if err != nil {
		if ctx.Err() != nil {
			return cursor, ctx.Err()
		}
		return cursor, err
	}
	defer resp.Body.Close()
	start := cursor
	if v := resp.Header.Get(wmiapi.ConsoleStartHeader); v != "" {
		if start, err = strconv.ParseUint(v, 10, 64); err != nil {
			return cursor, fmt.Errorf("bad %s header %q", wmiapi.ConsoleStartHeader, v)
		}
	}
	var body io.Reader = resp.Body
	if !follow {
		body = io.LimitReader(resp.Body, MaxResponse)
	}
	n, err := io.Copy(w, body)
	next := start + uint64(n)
	if err != nil {
		if ctx.Err() != nil {
			return next, ctx.Err()
		}
		return next, err
	}
	// The header says where the bytes end; a stream can only say it in a
	// trailer, if at all.
	h := resp.Header
	if follow {
		h = resp.Trailer
	}
	if v := h.Get(wmiapi.ConsoleCursorHeader); v != "" {
		if next, err = strconv.ParseUint(v, 10, 64); err != nil {
			return start + uint64(n), fmt.Errorf("bad %s header %q", wmiapi.ConsoleCursorHeader, v)
		}
	}
	return next, nil
}

// SendConsole writes data to a running partition's COM1.
func (c *Client) SendConsole(ctx context.Context, name string, data []byte) error {
	resp, err := c.send(ctx, http.MethodPost, api("Msvm_ComputerSystem", name)+"/console", bytes.NewReader(data), "application/octet-stream")
	if err != nil {
		return err
	}
	return drain(resp)
}

// api is a route under wmiapi.Prefix with each segment escaped.
func api(segs ...string) string {
	var b strings.Builder
	b.WriteString(wmiapi.Prefix)
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// method calls a management-service method whose output is a MethodResult.
func (c *Client) method(ctx context.Context, name string, in any) error {
	var out wmiapi.MethodResult
	if err := c.do(ctx, http.MethodPost, api("Msvm_VirtualSystemManagementService", name), in, &out); err != nil {
		return err
	}
	if out.ReturnValue != wmiapi.ReturnCompleted {
		return fmt.Errorf("%s returned %d", name, out.ReturnValue)
	}
	return nil
}

// do sends in (as JSON, when not nil) and decodes a 2xx response into out
// (when not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	resp, err := c.send(ctx, method, path, body, ctype)
	if err != nil {
		return err
	}
	if out == nil {
		return drain(resp)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if len(b) > MaxResponse {
		return fmt.Errorf("%s %s: response larger than %d bytes", method, path, MaxResponse)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding the response: %w", method, path, err)
	}
	return nil
}

// send makes a request and returns the response when its status is 2xx;
// otherwise it closes it and returns an *APIError.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, ctype string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeError(resp)
}

// decodeError turns an error response into an *APIError.
func decodeError(resp *http.Response) *APIError {
	e := &APIError{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
	var body wmiapi.Error
	if json.Unmarshal(b, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
		return e
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	e.Message = msg
	return e
}

// drain reads and closes a response body so that its connection can be
// used again.
func drain(resp *http.Response) error {
	defer resp.Body.Close()
	_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponse))
	return err
}
