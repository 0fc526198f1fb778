package acpipm

import "testing"

func TestPCIFunctionMovesBlock(t *testing.T) {
	type place struct {
		base uint16
		on   bool
	}
	var got []place
	f := NewPCIFunction(0x600, func(base uint16, on bool) { got = append(got, place{base, on}) })
	if id := f.Get(0, 4); id[0] != 0x86 || id[1] != 0x80 || id[2] != 0x13 || id[3] != 0x71 {
		t.Fatalf("id % x", id)
	}
	if b, on := f.pmBase(); b != 0x600 || !on {
		t.Fatalf("reset placement %#x %v", b, on)
	}
	f.ConfigWrite(regPMBA, []byte{0x01, 0xB0}) // SeaBIOS: 0xB000 | I/O
	f.ConfigWrite(regPMREGMISC, []byte{0x00})  // decoding off
	f.ConfigWrite(regPMREGMISC, []byte{0x01})
	f.ConfigWrite(regPMBA, []byte{0x3F, 0xB0}) // low bits are not writable: no move
	want := []place{{0xB000, true}, {0xB000, false}, {0xB000, true}}
	if len(got) != len(want) {
		t.Fatalf("callbacks %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("callback %d: %v, want %v", i, got[i], want[i])
		}
	}
}
