package uart

import (
	"bytes"
	"errors"
	"testing"
)

var samples = []Message{
	{Type: TypeHostRequest, ID: RequestVersion, Version: Version1},
	{Type: TypeHostResponse, ID: RequestVersion, Accepted: true},
	{Type: TypeHostNotification, ID: TxDataAvailable, Data: []byte("hello")},
	{Type: TypeHostNotification, ID: RxClearBuffer},
	{Type: TypeGuestNotification, ID: RxDataAvailable},
	{Type: TypeGuestNotification, ID: TxCompleted},
	{Type: TypeGuestNotification, ID: SetModemStatus, Modem: 0xB0, Connected: true},
	{Type: TypeHostRequest, ID: RequestGetRxData},
	{Type: TypeHostResponse, ID: RequestGetRxData, Data: bytes.Repeat([]byte("x"), MaxData), More: true},
}

func TestRoundTrip(t *testing.T) {
	for _, m := range samples {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		// In-band payloads arrive padded to 8 bytes.
		padded := append(b, make([]byte, (8-len(b)%8)%8)...)
		got, err := Decode(padded)
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if got.Type != m.Type || got.ID != m.ID || got.Version != m.Version || got.Accepted != m.Accepted ||
			!bytes.Equal(got.Data, m.Data) || got.More != m.More || got.Modem != m.Modem || got.Connected != m.Connected {
			t.Errorf("sent %+v, got %+v", m, got)
		}
	}
	if b, _ := Encode(samples[2]); len(b) != 70 {
		t.Errorf("TX_DATA_AVAILABLE is %d bytes, want 70", len(b))
	}
}

func TestDecodeRefuses(t *testing.T) {
	tx, _ := Encode(samples[2])
	long := append([]byte(nil), tx...)
	long[4] = 65
	pad := append([]byte(nil), tx...)
	pad[69] = 1
	for name, b := range map[string][]byte{
		"short":          {1, 2},
		"header version": {2, 4, 1, 0},
		"unknown type":   {1, 9, 1, 0},
		"unknown id":     {1, 1, 7, 0},
		"truncated":      tx[:40],
		"65 data bytes":  long,
		"pad byte":       pad,
		"accepted 2":     {1, 3, 1, 0, 2, 0},
	} {
		if _, err := Decode(b); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Encode(Message{Type: TypeHostNotification, ID: TxDataAvailable, Data: make([]byte, 65)}); err == nil {
		t.Error("65 data bytes encoded")
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range samples {
		b, _ := Encode(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if len(m.Data) > MaxData {
			t.Fatalf("%d data bytes", len(m.Data))
		}
		out, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", m, err)
		}
		// Bytes past the data length are not part of the message.
		again, err := Decode(out)
		if err != nil || again.Type != m.Type || again.ID != m.ID || !bytes.Equal(again.Data, m.Data) || again.More != m.More ||
			again.Version != m.Version || again.Accepted != m.Accepted || again.Modem != m.Modem || again.Connected != m.Connected {
			t.Fatalf("decoded %+v, re-encoded and decoded %+v (%v)", m, again, err)
		}
	})
}
