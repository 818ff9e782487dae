// Command checkin measures authenticated device check-ins per second on Rampart's real
// server, on SQLite and on PostgreSQL, side by side with a bare net/http handler that
// returns the same bytes, and prints the ratios as a Markdown table.
//
// It enrolls -devices devices through the real enrollment path (an enrollment token), gives
// each one check-in so its firmware version is stored, then drives each target with wrk
// (Debian's wrk, which must be installed) for -duration, alternating targets -rounds
// times. Every request carries a different device's bearer token, cycling through all
// devices. Only loopback addresses are used, and every run is bounded in time.
//
// Usage: go run ./bench/checkin [-devices 100000] [-duration 10s] [-postgres DSN]
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/config"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/server"
)

var cpuProfile string

func main() {
	devices := flag.Int("devices", 100_000, "enrolled devices")
	duration := flag.Duration("duration", 10*time.Second, "wrk duration per run")
	conns := flag.Int("connections", 64, "wrk connections")
	rounds := flag.Int("rounds", 2, "alternating rounds per target")
	pg := flag.String("postgres", "", "PostgreSQL DSN (empty: SQLite only)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the load phase to this file")
	flag.Parse()
	cpuProfile = *profile
	if err := run(*devices, *duration, *conns, *rounds, *pg); err != nil {
		fmt.Fprintln(os.Stderr, "checkin bench:", err)
		os.Exit(1)
	}
}

// idleBody is what the bare handler returns: the exact bytes of Rampart's idle answer.
var idleBody = []byte(`{"action":"none","poll_interval_s":300,"work":[]}` + "\n")

type target struct {
	name string
	url  string
}

func run(n int, dur time.Duration, conns, rounds int, pgDSN string) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk not found (apt-get install wrk): %w", err)
	}
	ctx := context.Background()
	work, err := os.MkdirTemp("", "rampart-checkin-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	bare, err := listen(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(idleBody)
	}))
	if err != nil {
		return err
	}
	targets := []target{{"bare net/http handler", bare}}

	type backend struct {
		name string
		cfg  config.Server
	}
	base := config.Server{
		Data: filepath.Join(work, "sqlite"), LogLevel: "error", LogFormat: "text", Listen: "127.0.0.1:0",
		PollInterval: 5 * time.Minute, DeviceTokenTTL: 24 * time.Hour, AuthCacheTTL: 5 * time.Minute, SeenFlush: 2 * time.Second,
	}
	backends := []backend{{"SQLite", base}}
	if pgDSN != "" {
		dsn, drop, err := freshSchema(ctx, pgDSN)
		if err != nil {
			return err
		}
		defer drop()
		c := base
		c.Database = dsn
		backends = append(backends, backend{"PostgreSQL", c})
	}
	tokenFiles := map[string]string{}
	for _, b := range backends {
		for _, ttl := range []time.Duration{5 * time.Minute, time.Millisecond} {
			cfg := b.cfg
			cfg.AuthCacheTTL = ttl
			srv, err := server.Open(ctx, cfg, log)
			if err != nil {
				return fmt.Errorf("%s: %w", b.name, err)
			}
			defer srv.Close()
			label := b.name + ", admission cached (5m, default)"
			if ttl <= time.Millisecond {
				label = b.name + ", admission cache 1ms: one store read per check-in"
			}
			if _, ok := tokenFiles[b.name]; !ok {
				start := time.Now()
				tokens, err := enroll(ctx, srv.Fleet, srv.Access, n)
				if err != nil {
					return fmt.Errorf("%s: enroll: %w", b.name, err)
				}
				fmt.Fprintf(os.Stderr, "%s: enrolled and checked in %d devices in %s\n", b.name, n, time.Since(start).Round(time.Second))
				f := filepath.Join(work, strings.ToLower(b.name)+".tokens")
				if err := os.WriteFile(f, []byte(strings.Join(tokens, "\n")+"\n"), 0o600); err != nil {
					return err
				}
				tokenFiles[b.name] = f
			}
			u, err := listen(srv.Handler())
			if err != nil {
				return err
			}
			targets = append(targets, target{label, u + "|" + tokenFiles[b.name]})
		}
	}
	script := filepath.Join(work, "checkin.lua")
	if err := os.WriteFile(script, []byte(luaScript), 0o600); err != nil {
		return err
	}
	bareTokens := tokenFiles["SQLite"]
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	type result struct{ rps, cpuUS []float64 }
	results := make([]result, len(targets))
	for r := range rounds {
		for i, tg := range targets {
			u, tokens, _ := strings.Cut(tg.url, "|")
			if tokens == "" {
				tokens = bareTokens
			}
			rps, cpu, err := runWrk(u, tokens, script, dur, conns)
			if err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-50s %8.0f req/s %6.1f µs CPU/req\n", r+1, tg.name, rps, cpu)
			results[i].rps = append(results[i].rps, rps)
			results[i].cpuUS = append(results[i].cpuUS, cpu)
		}
	}
	fmt.Printf("\n%d devices, wrk -t2 -c%d -d%s per run, %d alternating rounds, %s, GOMAXPROCS=%d\n\n", n, conns, dur, rounds, runtime.Version(), runtime.GOMAXPROCS(0))
	fmt.Println("| target | check-ins/s (per round) | ratio to bare | process CPU µs/check-in |")
	fmt.Println("|---|---:|---:|---:|")
	bareRPS := mean(results[0].rps)
	for i, tg := range targets {
		fmt.Printf("| %s | %s | %.2f | %.1f |\n", tg.name, joinF(results[i].rps), mean(results[i].rps)/bareRPS, mean(results[i].cpuUS))
	}
	return nil
}

// enroll admits n devices through the real enrollment path and gives each one check-in,
// returning their bearer tokens.
func enroll(ctx context.Context, f *fleet.Service, _ *access.Service, n int) ([]string, error) {
	const workers = 16
	// One enrollment token per worker: a single token's use counter is one row that every
	// enrollment locks, which would serialize seeding on PostgreSQL.
	secrets := make([]string, workers)
	for w := range secrets {
		_, secret, err := f.CreateEnrollToken(ctx, fleet.EnrollTokenSpec{Description: "bench", MaxUses: n, TTL: time.Hour})
		if err != nil {
			return nil, err
		}
		secrets[w] = secret
	}
	tokens := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for w := range workers {
		secret := secrets[w]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				tok, err := enrollOne(ctx, f, secret, i)
				if err != nil {
					errc <- err
					return
				}
				tokens[i] = tok
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	return tokens, f.FlushSeen(ctx)
}

func enrollOne(ctx context.Context, f *fleet.Service, enrollToken string, i int) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	ch, _, err := f.NewChallenge()
	if err != nil {
		return "", err
	}
	id := fleet.Identity{Serial: fmt.Sprintf("BENCH-%07d", i), DeviceType: "bench-gw"}
	body, _ := json.Marshal(map[string]any{"challenge": ch, "serial": id.Serial, "key": base64.StdEncoding.EncodeToString(pub)})
	a, err := f.Enroll(ctx, fleet.EnrollRequest{
		Identity: id, PublicKey: pub, EnrollToken: enrollToken, Challenge: ch,
		Signed: fleet.Signed{Body: body, Signature: ed25519.Sign(priv, body)},
	})
	if err != nil {
		return "", err
	}
	if _, err := f.CheckIn(ctx, a.Device.ID, fleet.CheckIn{FirmwareVersion: "1.0.0"}); err != nil {
		return "", err
	}
	return a.Token, nil
}

const luaScript = `
local tokens = {}
local i = 0
local body = '{"firmware_version":"1.0.0"}'
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  i = math.random(#tokens)
end
function request()
  i = i % #tokens + 1
  return wrk.format("POST", "/device/v1/checkin",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[i]}, body)
end
function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
    os.exit(1)
  end
end
`

var rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// runWrk drives url and returns requests/s and this process's CPU µs per request.
func runWrk(url, tokens, script string, dur time.Duration, conns int) (float64, float64, error) {
	cmd := exec.Command("wrk", "-t2", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(int(dur.Seconds()))+"s", "-s", script, url, "--", tokens)
	cpu0 := cpuTime()
	out, err := cmd.CombinedOutput()
	cpu := cpuTime() - cpu0
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %w: %s", err, out)
	}
	m := rpsRE.FindSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("wrk printed no rate: %s", out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	reqs := rps * dur.Seconds()
	if bytesNon2xx := strings.Contains(string(out), "Non-2xx"); bytesNon2xx {
		return 0, 0, fmt.Errorf("wrk saw non-2xx answers: %s", out)
	}
	return rps, float64(cpu.Microseconds()) / reqs, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func listen(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// freshSchema creates a throwaway schema so the benchmark never touches other data.
func freshSchema(ctx context.Context, dsn string) (string, func(), error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return "", nil, err
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	schema := "rampart_bench_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	drop := func() {
		_, _ = db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		db.Close()
	}
	return dsn + sep + "search_path=" + schema, drop, nil
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func joinF(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, " / ")
}
