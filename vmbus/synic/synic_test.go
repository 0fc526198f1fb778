package synic

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

func TestEventFlags(t *testing.T) {
	page := make([]byte, PageSize)
	e, err := NewEventFlags(page)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []uint32{5, 64, 2047, 5} {
		wasClear, err := e.Set(n)
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 3; wasClear != want {
			t.Errorf("Set(%d) #%d: wasClear %v, want %v", n, i, wasClear, want)
		}
	}
	// Flag 5 is at byte 0x200 bit 5; flag 2047 at the slot's last byte.
	if page[0x200] != 1<<5 || page[0x2FF] != 0x80 || binary.LittleEndian.Uint64(page[0x208:]) != 1 {
		t.Fatalf("layout: % x", page[0x200:0x210])
	}
	if again, _ := e.Set(64); again {
		t.Error("setting a set flag must not ask for an interrupt")
	}
	if _, err := e.Set(2048); !errors.Is(err, ErrBadFlag) {
		t.Errorf("flag 2048: %v", err)
	}
	page[0x200] |= 1 // flag 0: reserved, cleared silently
	var got []uint32
	e.Drain(func(f uint32) { got = append(got, f) })
	if !reflect.DeepEqual(got, []uint32{5, 64, 2047}) {
		t.Errorf("drained %v", got)
	}
	for i, b := range page {
		if b != 0 {
			t.Fatalf("byte %#x not cleared", i)
		}
	}
}
