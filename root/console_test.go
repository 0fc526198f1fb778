package root

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestConsoleWrapsAndKeepsCursors(t *testing.T) {
	c := newConsole()
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	var all []byte
	for i := 0; i < 20; i++ { // 1.25 MiB: more than the buffer keeps
		chunk[0] = byte(i)
		c.Write(chunk)
		all = append(all, chunk...)
	}
	if c.End() != uint64(len(all)) {
		t.Fatalf("end %d, want %d", c.End(), len(all))
	}
	// A cursor older than what is kept starts at the oldest byte kept.
	data, start, next := c.Read(0, 1<<30)
	if start != uint64(len(all)-consoleBufferSize) || next != uint64(len(all)) || !bytes.Equal(data, all[start:]) {
		t.Fatalf("read from 0: start %d next %d len %d", start, next, len(data))
	}
	// A cursor inside, with a limit.
	data, start, next = c.Read(uint64(len(all)-100), 40)
	if start != uint64(len(all)-100) || next != start+40 || !bytes.Equal(data, all[start:next]) {
		t.Fatalf("read inside: %d %d", start, next)
	}
	// Past the end: nothing, at the end.
	data, start, next = c.Read(1<<40, 10)
	if len(data) != 0 || start != c.End() || next != c.End() {
		t.Fatalf("read past end: %d %d %d", len(data), start, next)
	}
	// One write larger than the buffer keeps its tail.
	big := bytes.Repeat([]byte{7}, consoleBufferSize+5)
	big[len(big)-1] = 9
	c.Write(big)
	data, _, _ = c.Read(0, 1<<30)
	if len(data) != consoleBufferSize || data[len(data)-1] != 9 {
		t.Fatalf("after a huge write: %d bytes", len(data))
	}
}

func TestConsoleFollow(t *testing.T) {
	c := newConsole()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Not live and empty: Follow ends at once.
	if _, _, _, ok := c.Follow(ctx, 0, 10); ok {
		t.Fatal("follow of a dead empty console returned data")
	}
	c.setLive(true)
	got := make(chan []byte)
	go func() {
		data, _, _, _ := c.Follow(ctx, 0, 10)
		got <- data
	}()
	time.Sleep(20 * time.Millisecond)
	c.Write([]byte("hello"))
	if d := <-got; string(d) != "hello" {
		t.Fatalf("follow got %q", d)
	}
	// A follower waiting at the end is released when the worker goes.
	done := make(chan bool)
	go func() {
		_, _, _, ok := c.Follow(ctx, 5, 10)
		done <- ok
	}()
	time.Sleep(20 * time.Millisecond)
	c.setLive(false)
	if <-done {
		t.Fatal("follow returned data after the console died")
	}
	// A follower whose context ends is released too.
	c.setLive(true)
	short, cancel2 := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel2()
	if _, _, _, ok := c.Follow(short, 5, 10); ok {
		t.Fatal("follow returned without data")
	}
}
