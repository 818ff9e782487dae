package sim_test

import (
	"context"
	"flag"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/agent/agenttest"
	"github.com/rampart-iot/rampart/internal/nativeproto"
	"github.com/rampart-iot/rampart/internal/sim"
)

var (
	benchDevices = flag.Int("sim.devices", 200, "virtual devices of BenchmarkDeviceMemory")
	heapProfile  = flag.String("sim.heapprofile", "", "write a heap profile of the running fleet here")
)

// BenchmarkDeviceMemory measures what one idle virtual device costs once it has enrolled and
// taken an update with the memory installer (and rebooted): live heap after a GC and
// goroutine stack, per device. The devices follow the server's 60 s poll interval, so they
// are idle when it measures; the fake server's share (about 1 KiB a device) is counted in.
// Run with -sim.devices=10000 for the figure at 10k devices.
func BenchmarkDeviceMemory(b *testing.B) {
	n := *benchDevices
	srv := agenttest.NewServer(b)
	art := srv.Publish("fw/sim-2.0.0.img", sim.Image("2.0.0", 1024), "2.0.0", "sim-gw")
	srv.Deploy(nativeproto.Work{ID: "dep_mem", Kind: nativeproto.WorkUpdate, Version: "2.0.0", Action: "forced", Artifact: &art})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for b.Loop() {
		s, err := sim.New(sim.Options{Server: srv.URL, Devices: n, EnrollToken: "t", Types: []sim.DeviceType{{Name: "sim-gw", Weight: 1}},
			StateRoot: b.TempDir(), Interval: 0, Seed: 1, Installer: sim.InstallerMemory, MaxConcurrent: 256})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		deadline := time.Now().Add(10 * time.Minute)
		for s.Stats().Updated < int64(n) || s.Stats().CheckIns < 2*int64(n) {
			if time.Now().After(deadline) {
				b.Fatalf("devices did not all update in time: %+v", s.Stats())
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Second) // let the last requests finish
		var after runtime.MemStats
		for range 4 { // each GC halves the stacks of goroutines that use little of theirs
			runtime.GC()
		}
		runtime.ReadMemStats(&after)
		if *heapProfile != "" {
			f, err := os.Create(*heapProfile)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.WriteHeapProfile(f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/device")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/float64(n), "stack-B/device")
		b.Logf("%d devices: heap %.1f MiB, stacks %.1f MiB, stats %+v", n, float64(after.HeapAlloc-before.HeapAlloc)/(1<<20),
			float64(after.StackInuse-before.StackInuse)/(1<<20), s.Stats())
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
