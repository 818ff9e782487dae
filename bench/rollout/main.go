// Command rollout measures a rollout of one release to a simulated fleet on Rampart's real
// server, on SQLite and on PostgreSQL: server CPU-seconds per updated device, peak server
// RSS, and wall time until 95% of the devices run the new release.
//
// It builds the rampart binary, starts `rampart server` as a child process (so its CPU time
// and peak RSS can be read from /proc), enrolls -devices virtual devices with the simulator
// (internal/sim, the real agent code with an in-memory A/B installer), lets the fleet check in
// idle for -idle as the reference run (the CPU the same fleet costs with nothing to do), then
// creates a deployment and waits until 95% of the devices succeeded. Only loopback addresses
// are used; every phase has a time limit.
//
// Usage: go run ./bench/rollout [-devices 100000] [-poll 2m] [-postgres DSN [-sqlite=false]]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/client"
	"github.com/rampart-iot/rampart/internal/sim"
)

func main() {
	devices := flag.Int("devices", 100_000, "simulated devices")
	poll := flag.Duration("poll", 30*time.Second, "check-in interval the server suggests")
	idle := flag.Duration("idle", 60*time.Second, "idle reference period")
	plan := flag.String("plan", "1% name=canary bake=0s; 10% bake=0s; 100%", "rollout plan")
	pg := flag.String("postgres", "", "PostgreSQL DSN (empty: SQLite only)")
	limit := flag.Duration("timeout", 30*time.Minute, "give up after this long per engine")
	withSQLite := flag.Bool("sqlite", true, "run on SQLite (false with -postgres: PostgreSQL only)")
	flag.Parse()
	if !*withSQLite && *pg == "" {
		fmt.Fprintln(os.Stderr, "rollout bench: -sqlite=false needs -postgres")
		os.Exit(2)
	}
	if err := run(*devices, *poll, *idle, *plan, *pg, *withSQLite, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "rollout bench:", err)
		os.Exit(1)
	}
}

type result struct {
	engine                       string
	enroll, to95                 time.Duration
	idleCPU, rolloutCPU          float64 // server CPU-seconds
	idleCheckIns, updated        int64
	peakRSS                      int64 // bytes
	simHeap                      uint64
	cpuPerDevice, idlePerCheckIn float64
	rolloutRatio                 float64
	dbCPU, dbPerDevice           float64 // PostgreSQL's processes during the rollout (SQLite runs inside the server)
	enrollRSS, createRSS         int64   // server VmHWM when enrollment ended and once the deployment was created, bytes
	total                        int     // targeted devices
	partial                      bool    // the time limit ended the rollout before 95%
}

func run(n int, poll, idle time.Duration, plan, pgDSN string, withSQLite bool, limit time.Duration) error {
	work, err := os.MkdirTemp("", "rampart-rollout-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "rampart")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/rampart").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	var engines []struct{ name, dsn string }
	if withSQLite {
		engines = append(engines, struct{ name, dsn string }{"SQLite", ""})
	}
	if pgDSN != "" {
		engines = append(engines, struct{ name, dsn string }{"PostgreSQL", pgDSN})
	}
	var results []result
	for _, e := range engines {
		dsn := e.dsn
		if dsn != "" {
			fresh, drop, err := freshSchema(pgDSN)
			if err != nil {
				return err
			}
			defer drop()
			dsn = fresh
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		r, err := runEngine(ctx, e.name, bin, filepath.Join(work, e.name), dsn, n, poll, idle, plan)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		results = append(results, r)
		printResults(results, n, poll, plan)
	}
	return nil
}

func printResults(rs []result, n int, poll time.Duration, plan string) {
	fmt.Printf("\nRollout of one release to %d simulated devices (poll %s, plan %q), %s, %d CPUs\n\n", n, poll, plan, runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU())
	fmt.Println("| engine | enroll | wall to 95% updated | server CPU-s per updated device | PostgreSQL CPU-s per updated device | idle reference: CPU-s per check-in | rollout CPU / idle CPU over the same wall time | peak server RSS (at end of enrollment / after creating the deployment) | sim heap |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		wall := r.to95.Round(time.Second).String()
		if r.partial {
			wall = fmt.Sprintf("not reached: %d of %d updated after %s", r.updated, r.total, r.to95.Round(time.Second))
		}
		db := "in the server process"
		if r.engine == "PostgreSQL" {
			db = fmt.Sprintf("%.5f (%.1f s)", r.dbPerDevice, r.dbCPU)
		}
		fmt.Printf("| %s | %s | %s | %.5f (%.1f s for %d) | %s | %.6f (%.1f s for %d) | %.2f | %.0f MiB (%.0f / %.0f MiB) | %.0f MiB |\n",
			r.engine, r.enroll.Round(time.Second), wall, r.cpuPerDevice, r.rolloutCPU, r.updated, db,
			r.idlePerCheckIn, r.idleCPU, r.idleCheckIns, r.rolloutRatio, float64(r.peakRSS)/(1<<20), float64(r.enrollRSS)/(1<<20), float64(r.createRSS)/(1<<20), float64(r.simHeap)/(1<<20))
	}
}

func runEngine(ctx context.Context, engine, bin, dir, dsn string, n int, poll, idle time.Duration, plan string) (result, error) {
	r := result{engine: engine}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return r, err
	}
	port, err := freePort()
	if err != nil {
		return r, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"server", "--data", filepath.Join(dir, "data"), "--listen", listen, "--poll-interval", poll.String(), "--log-level", "warn"}
	if dsn != "" {
		args = append(args, "--database", dsn)
	}
	// Not tied to ctx: when the time limit ends the rollout, the server's CPU time and peak
	// RSS are still read before the deferred kill.
	srv := exec.Command(bin, args...)
	stderr, err := srv.StderrPipe()
	if err != nil {
		return r, err
	}
	if err := srv.Start(); err != nil {
		return r, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	token, err := adminToken(stderr)
	if err != nil {
		return r, err
	}
	base := "http://" + listen
	c := client.New(base, token, nil)
	if err := waitReady(ctx, c); err != nil {
		return r, err
	}
	et, err := c.CreateEnrollToken(ctx, api.EnrollTokenRequest{MaxUses: n, TTL: "24h"})
	if err != nil {
		return r, err
	}
	s, err := sim.New(sim.Options{
		Server: base, Devices: n, EnrollToken: et.Secret, Types: []sim.DeviceType{{Name: "gw", Weight: 1}},
		StateRoot: filepath.Join(dir, "sim"), Seed: 1, Installer: sim.InstallerMemory, MaxConcurrent: 256,
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return r, err
	}
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	simDone := make(chan error, 1)
	start := time.Now()
	go func() { simDone <- s.Run(simCtx) }()
	fmt.Fprintf(os.Stderr, "%s: enrolling %d devices\n", engine, n)
	for s.Stats().Enrolled < int64(n) {
		if err := wait(ctx, simDone, time.Second); err != nil {
			return r, fmt.Errorf("enrolling (%d enrolled): %w", s.Stats().Enrolled, err)
		}
	}
	r.enroll = time.Since(start)
	r.enrollRSS, _ = peakRSS(srv.Process.Pid)
	// Let the first inventory uploads and check-ins of the whole fleet settle.
	if err := wait(ctx, simDone, poll); err != nil {
		return r, err
	}

	rel, err := c.CreateRelease(ctx, api.ReleaseRequest{Name: "bench-fw", Version: "2.0", DeviceTypes: []string{"gw"}})
	if err != nil {
		return r, err
	}
	img := sim.Image("2.0", 4096)
	sum := sha256.Sum256(img)
	if _, err := c.UploadArtifact(ctx, rel.ID, client.Upload{Name: "fw.img", Role: "full", Size: int64(len(img)), SHA256: hex.EncodeToString(sum[:])}, bytes.NewReader(img)); err != nil {
		return r, err
	}
	if _, err := c.Publish(ctx, rel.ID); err != nil {
		return r, err
	}

	fmt.Fprintf(os.Stderr, "%s: idle reference for %s\n", engine, idle)
	cpu0, err := cpuSeconds(srv.Process.Pid)
	if err != nil {
		return r, err
	}
	ci0 := s.Stats().CheckIns
	if err := wait(ctx, simDone, idle); err != nil {
		return r, err
	}
	cpu1, _ := cpuSeconds(srv.Process.Pid)
	db1 := postgresCPU(dsn)
	r.idleCPU, r.idleCheckIns = cpu1-cpu0, s.Stats().CheckIns-ci0
	r.idlePerCheckIn = r.idleCPU / float64(max(r.idleCheckIns, 1))

	fmt.Fprintf(os.Stderr, "%s: rollout\n", engine)
	created, err := c.CreateDeployment(ctx, api.DeploymentRequest{Name: "bench", ReleaseID: rel.ID, Target: api.DeploymentTarget{Filter: "true"}, Plan: plan})
	if err != nil {
		return r, err
	}
	r.createRSS, _ = peakRSS(srv.Process.Pid)
	start = time.Now()
	lastReport := start
	for {
		if err := wait(ctx, simDone, time.Second); err != nil {
			if ctx.Err() == nil || r.updated == 0 {
				return r, err
			}
			// Out of time: report what the rollout reached rather than nothing.
			r.partial = true
			break
		}
		d, err := c.Deployment(ctx, created.Deployment.ID)
		if err != nil {
			continue
		}
		r.updated, r.total = int64(d.States["success"]), d.Total
		if d.States["success"]*100 >= 95*d.Total {
			break
		}
		if d.Status == "halted" || d.Status == "cancelled" {
			return r, fmt.Errorf("deployment %s: %s", d.Status, d.Reason)
		}
		if time.Since(lastReport) >= time.Minute {
			lastReport = time.Now()
			cpu, _ := cpuSeconds(srv.Process.Pid)
			rss, _ := peakRSS(srv.Process.Pid)
			fmt.Fprintf(os.Stderr, "%s: %s: %d of %d updated, states %v, server CPU %.0f s, VmHWM %.0f MiB\n",
				engine, time.Since(start).Round(time.Second), r.updated, r.total, d.States, cpu-cpu1, float64(rss)/(1<<20))
		}
	}
	r.to95 = time.Since(start)
	cpu2, _ := cpuSeconds(srv.Process.Pid)
	r.rolloutCPU = cpu2 - cpu1
	r.dbCPU = postgresCPU(dsn) - db1
	r.dbPerDevice = r.dbCPU / float64(max(r.updated, 1))
	r.cpuPerDevice = r.rolloutCPU / float64(r.updated)
	r.rolloutRatio = r.rolloutCPU / (r.idleCPU * r.to95.Seconds() / idle.Seconds())
	r.peakRSS, _ = peakRSS(srv.Process.Pid)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.simHeap = ms.HeapInuse
	stopSim()
	select { // wait may already have taken the simulator's result when time ran out
	case <-simDone:
	case <-time.After(time.Minute):
	}
	return r, nil
}

// wait sleeps d unless ctx ends or the simulator stops first.
func wait(ctx context.Context, simDone <-chan error, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-simDone:
		return fmt.Errorf("simulator stopped: %v", err)
	case <-time.After(d):
		return nil
	}
}

func waitReady(ctx context.Context, c *client.Client) error {
	for i := 0; i < 300; i++ {
		if _, err := c.Whoami(ctx); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("server did not answer")
}

// adminToken reads the initial admin token the server prints on its first start, then
// keeps draining its standard error.
func adminToken(stderr interface{ Read([]byte) (int, error) }) (string, error) {
	sc := bufio.NewScanner(stderr)
	seen := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.Contains(line, "Initial admin API token") {
			seen = true
			continue
		}
		if seen && line != "" {
			go func() {
				for sc.Scan() {
				}
			}()
			return line, nil
		}
	}
	return "", errors.New("server printed no admin token")
}

// cpuSeconds is a process's user + system CPU time.
func cpuSeconds(pid int) (float64, error) {
	_, secs, err := statCPU(fmt.Sprintf("/proc/%d/stat", pid), false)
	return secs, err
}

// postgresCPU is the CPU-seconds of the local PostgreSQL's processes, including backends
// that have exited (the postmaster's reaped children), or 0 when dsn is empty (SQLite). It
// counts the whole cluster, so it is only meaningful on a machine where nothing else uses it.
func postgresCPU(dsn string) float64 {
	if dsn == "" {
		return 0
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var total float64
	for _, d := range dirs {
		if comm, secs, err := statCPU(filepath.Join(d, "stat"), true); err == nil && comm == "postgres" {
			total += secs
		}
	}
	return total
}

// statCPU reads a /proc/<pid>/stat file: the command name and the user + system CPU-seconds,
// with those of the reaped children added when children is set.
func statCPU(path string, children bool) (string, float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, err
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open || end+2 > len(b) {
		return "", 0, fmt.Errorf("%s: unexpected format", path)
	}
	f := strings.Fields(string(b[end+2:]))
	if len(f) < 15 {
		return "", 0, fmt.Errorf("%s: unexpected format", path)
	}
	fields := []int{11, 12} // utime, stime
	if children {
		fields = append(fields, 13, 14) // cutime, cstime
	}
	var ticks float64
	for _, k := range fields {
		v, _ := strconv.ParseFloat(f[k], 64)
		ticks += v
	}
	return string(b[open+1 : end]), ticks / 100, nil // USER_HZ is 100 on Linux
}

// peakRSS is a process's VmHWM.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// freshSchema creates a throwaway schema so the benchmark never touches other data.
func freshSchema(dsn string) (string, func(), error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return "", nil, err
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	schema := "rampart_rollout_bench_" + hex.EncodeToString(b)
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema, func() {
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	}, nil
}
