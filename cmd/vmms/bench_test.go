package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/partita-hv/partita/internal/testenv"
	"github.com/partita-hv/partita/internal/testguest"
	"github.com/partita-hv/partita/internal/testplatform"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// BenchmarkAPIList: 64 concurrent clients list 100 defined partitions.
// Reports requests/s and the 99th percentile latency. Client and server
// share the machine's cores.
//
//	go test -run '^$' -bench APIList -benchtime 10s ./cmd/vmms
func BenchmarkAPIList(b *testing.B) {
	v := startVMMS(b, b.TempDir(), "--log-level", "info")
	for i := 0; i < 100; i++ {
		if s := v.callQuiet("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem",
			wmiapi.DefineSystemRequest{SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: fmt.Sprintf("list-%03d", i)}}); s != 201 {
			b.Fatalf("define: %d", s)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128}}
	url := v.base + wmiapi.Prefix + "/Msvm_ComputerSystem"
	var mu sync.Mutex
	var all []time.Duration
	b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var lat []time.Duration
		for pb.Next() {
			t0 := time.Now()
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "Bearer "+v.token)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			lat = append(lat, time.Since(t0))
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	}
}

// tinyROM assembles the worker's tiny test ROM (prints a line on COM1,
// powers off).
func tinyROM(b *testing.B) string {
	return testguest.AssembleToFile(b, testguest.WorkerROM("hello"), "0")
}

// BenchmarkStartLatency: from RequestStateChange(2) to the first console
// byte of a tiny ROM guest, beside QEMU from process start to the first
// serial byte of the same ROM.
//
//	go test -run '^$' -bench StartLatency -benchtime 20x ./cmd/vmms
func BenchmarkStartLatency(b *testing.B) {
	for _, mode := range []struct {
		name string
		args []string
	}{{"partita", nil}, {"partita-no-spare", []string{"--no-spare-worker"}}} {
		b.Run(mode.name, func(b *testing.B) {
			b.Logf("on %s", requireGen1(b))
			rom := tinyROM(b)
			v := startVMMS(b, b.TempDir(), append([]string{"--log-level", "info"}, mode.args...)...)
			measureStarts(b, v, wmiapi.DefineSystemRequest{SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: "tiny", FirmwareFile: rom},
				ResourceSettings: []wmiapi.ResourceSettingData{{ResourceType: wmiapi.ResourceMemory, VirtualQuantity: 16}}})
		})
	}
	goGuest := testguest.GoGuest(b, b.TempDir())
	b.Run("partita-gen2-go", func(b *testing.B) {
		// A Go program in a Generation 2 partition: its first console
		// byte comes once its runtime is up and 8 goroutines have run.
		b.Logf("on %s", testplatform.Gen2(b))
		v := startVMMS(b, b.TempDir(), "--log-level", "info")
		measureStarts(b, v, wmiapi.DefineSystemRequest{SystemSettings: wmiapi.VirtualSystemSettingData{ElementName: "go", VirtualSystemSubType: wmiapi.SubTypeGen2, GuestFile: goGuest},
			ResourceSettings: []wmiapi.ResourceSettingData{{ResourceType: wmiapi.ResourceMemory, VirtualQuantity: 256}}})
	})
	b.Run("native-go", func(b *testing.B) {
		// The same static binary started by this process.
		var total time.Duration
		for i := 0; i < b.N; i++ {
			total += processFirstByte(b, goGuest)
		}
		b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/first-byte")
	})
	b.Run("qemu", func(b *testing.B) {
		// QEMU on the accelerator our Generation 1 partitions get here:
		// KVM, or TCG beside our tcg.
		pl := requireGen1(b)
		rom := tinyROM(b)
		qemu := testenv.RequireTool(b, "qemu-system-x86_64")
		var total time.Duration
		for i := 0; i < b.N; i++ {
			total += processFirstByte(b, qemu, "-accel", pl, "-M", "pc", "-m", "16", "-bios", rom, "-display", "none",
				"-nodefaults", "-serial", "stdio", "-no-reboot")
		}
		b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/first-byte")
	})
}

// processFirstByte starts a process and times it to the first byte on
// its standard output, then kills it.
func processFirstByte(b *testing.B, name string, args ...string) time.Duration {
	t0 := time.Now()
	cmd := exec.Command(name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if _, err := bufio.NewReader(out).ReadByte(); err != nil {
		b.Fatalf("%s: no output: %v", name, err)
	}
	return time.Since(t0)
}

// consoleEnd returns a partition's console cursor.
func consoleEnd(b *testing.B, v *vmms, name string) uint64 {
	req, _ := http.NewRequest("GET", v.base+wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/console?cursor=18446744073709551615", nil)
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	n, err := strconv.ParseUint(resp.Header.Get(wmiapi.ConsoleCursorHeader), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// follow opens a partition's console from cursor, followed; the caller
// closes it and calls cancel.
func follow(b *testing.B, v *vmms, name string, cursor uint64) (io.ReadCloser, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s%s/Msvm_ComputerSystem/%s/console?follow=true&cursor=%d", v.base, wmiapi.Prefix, name, cursor), nil)
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	return resp.Body, cancel
}

// firstByte follows the console from cursor until one byte arrives.
func firstByte(b *testing.B, v *vmms, name string, cursor uint64) {
	body, cancel := follow(b, v, name, cursor)
	defer cancel()
	defer body.Close()
	var one [1]byte
	if _, err := io.ReadFull(body, one[:]); err != nil {
		b.Fatalf("no console byte: %v", err)
	}
}

// spareSettle is the pause between two measured starts.
const spareSettle = 300 * time.Millisecond

// measureStarts defines a partition whose guest prints and powers off,
// then b.N times starts it and times RequestStateChange(2) to its first
// console byte, waiting for it to be off again, and spareSettle more,
// between starts.
func measureStarts(b *testing.B, v *vmms, def wmiapi.DefineSystemRequest) {
	name := def.SystemSettings.ElementName
	if s := v.callQuiet("POST", wmiapi.Prefix+"/Msvm_VirtualSystemManagementService/DefineSystem", def); s != 201 {
		b.Fatalf("define: %d", s)
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		cursor := consoleEnd(b, v, name)
		t0 := time.Now()
		var res wmiapi.StateChangeResult
		if s := v.call("POST", wmiapi.Prefix+"/Msvm_ComputerSystem/"+name+"/RequestStateChange", wmiapi.StateChangeRequest{RequestedState: 2}, &res); s != 202 {
			b.Fatalf("start: %d", s)
		}
		firstByte(b, v, name, cursor)
		total += time.Since(t0)
		v.waitJob(res.Job.InstanceID, 30*time.Second)
		for v.system(name).EnabledState != wmiapi.StateOff {
			time.Sleep(5 * time.Millisecond)
		}
		// A start takes the spare worker and the root starts the next
		// one, which needs tens of milliseconds to be ready (exec, the
		// platforms, a PC made ahead): starts a user makes one by one
		// find it ready, back-to-back starts would not.
		time.Sleep(spareSettle)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/first-byte")
}

// waitFor follows a partition's console from cursor until want appears.
func waitFor(b *testing.B, v *vmms, name string, cursor uint64, want string) {
	body, cancel := follow(b, v, name, cursor)
	defer cancel()
	defer body.Close()
	var got []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(got), want) {
		n, err := body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil && !strings.Contains(string(got), want) {
			b.Fatalf("console ended before %q: %v; got %q", want, err, got)
		}
	}
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// BenchmarkHvguest: the default Generation 2 guest through the API.
// "banner" times RequestStateChange(2) to hvguest's prompt after its
// banner (VMBus connected, console and integration services open);
// "console-rtt" times a line sent through the API to its echo coming
// back through the API, beside the same round trip through a Generation
// 1 guest's emulated UART (SeaBIOS and the console test MBR).
//
//	go test -run '^$' -bench Hvguest -benchtime 20x ./cmd/vmms
func BenchmarkHvguest(b *testing.B) {
	requireGen1(b)
	b.Run("banner", func(b *testing.B) {
		v := startVMMS(b, b.TempDir(), "--log-level", "info")
		v.defineGen2("hv", "", 64)
		var times []time.Duration
		for i := 0; i < b.N; i++ {
			cursor := consoleEnd(b, v, "hv")
			t0 := time.Now()
			if j := v.change("hv", wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
				b.Fatalf("start: %+v", j)
			}
			waitFor(b, v, "hv", cursor, "hvguest> ")
			times = append(times, time.Since(t0))
			if j := v.change("hv", wmiapi.RequestOff); j.JobState != wmiapi.JobCompleted {
				b.Fatalf("off: %+v", j)
			}
		}
		b.ReportMetric(float64(median(times).Microseconds())/1000, "median-ms/banner")
	})
	rtt := func(b *testing.B, v *vmms, name, send, want string) {
		var times []time.Duration
		for i := 0; i < b.N; i++ {
			cursor := consoleEnd(b, v, name)
			t0 := time.Now()
			v.sendConsole(name, fmt.Sprintf(send, i))
			waitFor(b, v, name, cursor, fmt.Sprintf(want, i))
			times = append(times, time.Since(t0))
		}
		b.ReportMetric(float64(median(times).Microseconds())/1000, "median-ms/round-trip")
	}
	b.Run("console-rtt/gen2-vmbus", func(b *testing.B) {
		v := startVMMS(b, b.TempDir(), "--log-level", "info")
		v.defineGen2("hv", "", 64)
		if j := v.change("hv", wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
			b.Fatalf("start: %+v", j)
		}
		v.waitConsole("hv", 30*time.Second, "hvguest> ")
		rtt(b, v, "hv", "echo rt%d\n", "\r\nrt%d\r\n")
	})
	b.Run("console-rtt/gen1-uart", func(b *testing.B) {
		v := startVMMS(b, b.TempDir(), "--log-level", "info")
		img, _ := testguest.ConsoleDisk(b, b.TempDir())
		v.defineGen1("g1", img)
		if j := v.change("g1", wmiapi.RequestRunning); j.JobState != wmiapi.JobCompleted {
			b.Fatalf("start: %+v", j)
		}
		v.waitConsole("g1", 90*time.Second, testguest.ConsoleToken)
		rtt(b, v, "g1", "rt%d\n", "RT%d")
	})
}
