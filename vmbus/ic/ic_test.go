package ic

import (
	"errors"
	"testing"
	"time"
)

func TestNegotiation(t *testing.T) {
	req := Build(Header{Type: TypeNegotiate, Flags: FlagTransaction | FlagRequest, TransID: 7},
		EncodeNegotiation(Negotiation{Frameworks: []Version{{1, 0}, {3, 0}}, Services: []Version{{1, 0}, {3, 0}}}), 256)
	m, err := Parse(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ParseNegotiation(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	fw, ok1 := Pick(Frameworks, n.Frameworks)
	svc, ok2 := Pick(HeartbeatVersions, n.Services)
	if !ok1 || !ok2 || fw != (Version{3, 0}) || svc != (Version{3, 0}) {
		t.Fatalf("picked %v %v", fw, svc)
	}
	if err := Reply(req, StatusOK, EncodeNegotiation(Negotiation{Frameworks: []Version{fw}, Services: []Version{svc}})); err != nil {
		t.Fatal(err)
	}
	r, err := Parse(req)
	if err != nil || r.Flags != FlagTransaction|FlagResponse || r.TransID != 7 || r.Size != 16 {
		t.Fatalf("%+v %v", r.Header, err)
	}
	got, _ := ParseNegotiation(r.Body)
	if len(got.Frameworks) != 1 || got.Services[0] != (Version{3, 0}) {
		t.Errorf("%+v", got)
	}
}

func TestBodies(t *testing.T) {
	hb, err := ParseHeartbeat(Heartbeat{Seq: 41, AppState: AppHealthy}.Encode())
	if err != nil || hb.Seq != 41 || hb.AppState != AppHealthy {
		t.Errorf("%+v %v", hb, err)
	}
	sd, err := ParseShutdown(Shutdown{Reason: ReasonPlanned, Flags: ShutdownForce, Message: "bye"}.Encode())
	if err != nil || sd.Message != "bye" || sd.Flags != ShutdownForce {
		t.Errorf("%+v %v", sd, err)
	}
	now := time.Now().Truncate(100 * time.Nanosecond)
	ts, err := ParseTimeSync(TimeSyncMsg{Parent: now, Reference: 5, Flags: TimeSync}.Encode())
	if err != nil || !ts.Parent.Equal(now) || ts.Flags != TimeSync {
		t.Errorf("%+v %v (want %v)", ts, err, now)
	}
	for _, k := range []KVP{
		{Op: KVPSet, Pool: PoolExternal, Key: "Ünïcode key", Value: "value ✓"},
		{Op: KVPEnumerate, Pool: PoolAuto, Index: 3, Key: "OSName", Value: "Partita hvguest"},
		{Op: KVPDelete, Pool: PoolExternal, Key: "gone"},
	} {
		b, err := k.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseKVP(b)
		if err != nil || got != k {
			t.Errorf("sent %+v got %+v %v", k, got, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good := Build(Header{Type: TypeHeartbeat}, Heartbeat{Seq: 1}.Encode(), 0)
	for name, b := range map[string][]byte{
		"short":         good[:20],
		"pipe type":     append([]byte{2, 0, 0, 0}, good[4:]...),
		"pipe length":   append(append([]byte(nil), good[:4]...), append([]byte{0xFF, 0, 0, 0}, good[8:]...)...),
		"body past end": good[:BodyOffset+4],
	} {
		if _, err := Parse(b); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ParseNegotiation([]byte{101, 0, 0, 0, 0, 0, 0, 0}); err == nil {
		t.Error("101 frameworks accepted")
	}
	if _, err := ParseKVP([]byte{KVPSet, 9, 0, 0}); err == nil {
		t.Error("pool 9 accepted")
	}
}

// FuzzParse drives every parser a guest's answer reaches on the host.
func FuzzParse(f *testing.F) {
	f.Add(Build(Header{Type: TypeNegotiate}, EncodeNegotiation(Negotiation{Frameworks: Frameworks, Services: KVPVersions}), 0))
	f.Add(Build(Header{Type: TypeHeartbeat}, Heartbeat{Seq: 9}.Encode(), 0))
	kvp, _ := KVP{Op: KVPEnumerate, Pool: PoolGuest, Key: "k", Value: "v"}.Encode()
	f.Add(Build(Header{Type: TypeKVP}, kvp, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		if len(m.Body) != int(m.Size) {
			t.Fatalf("body %d, size %d", len(m.Body), m.Size)
		}
		ParseNegotiation(m.Body)
		ParseHeartbeat(m.Body)
		ParseShutdown(m.Body)
		ParseTimeSync(m.Body)
		ParseKVP(m.Body)
	})
}
