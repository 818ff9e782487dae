// Package server is Rampart's composition root: it turns a config.Server into a store, the
// domain services, the HTTP handlers and a listener, and shuts them down in reverse order.
// It holds no business rules; every decision lives in the packages it wires together.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/blob"
	"github.com/rampart-iot/rampart/internal/blob/localfs"
	"github.com/rampart-iot/rampart/internal/blob/s3"
	"github.com/rampart-iot/rampart/internal/config"
	"github.com/rampart-iot/rampart/internal/deployment"
	"github.com/rampart-iot/rampart/internal/deviceapi/native"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/jsonhttp"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/store/postgres"
	"github.com/rampart-iot/rampart/internal/store/sqlite"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
	"github.com/rampart-iot/rampart/internal/tuf"
)

// Server is a running Rampart server's parts.
type Server struct {
	cfg      config.Server
	log      *slog.Logger
	store    *sqlstore.Store
	Fleet    *fleet.Service
	Access   *access.Service
	Releases *release.Service
	// TUF is the fleet's update-metadata repository.
	TUF *tuf.Repository
	// Grants issues download grants (deployments hand them to devices with their work).
	Grants *release.Grants
	// Deployments runs rollouts; its scheduler runs in the background.
	Deployments *deployment.Service
	blobs       blob.Store
	// InitialToken is the admin API token created on first start ("" on later starts).
	InitialToken access.Secret

	handler  http.Handler
	delivery *deliveryGauges
	bg       sync.WaitGroup
	stopBG   context.CancelFunc
}

// OpenStore opens the database the config names and runs its migrations.
func OpenStore(ctx context.Context, cfg config.Server, log *slog.Logger) (*sqlstore.Store, error) {
	if p := cfg.SQLitePath(); p != "" {
		if cfg.Database == "" {
			if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
				return nil, fmt.Errorf("create data directory: %w", err)
			}
		}
		return sqlite.Open(ctx, p, log)
	}
	return postgres.Open(ctx, cfg.Database, log)
}

// Open builds a server from cfg: opens and migrates the store, creates the first admin
// token when there is none, and starts background work. Close undoes it.
func Open(ctx context.Context, cfg config.Server, log *slog.Logger) (*Server, error) {
	st, err := OpenStore(ctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s, err := build(ctx, cfg, log, st)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return s, nil
}

func build(ctx context.Context, cfg config.Server, log *slog.Logger, st *sqlstore.Store) (*Server, error) {
	candidate := make([]byte, 32)
	if _, err := rand.Read(candidate); err != nil {
		return nil, fmt.Errorf("device token secret: %w", err)
	}
	secret, err := st.Secret(ctx, "device-token-hmac", candidate)
	if err != nil {
		return nil, fmt.Errorf("device token secret: %w", err)
	}
	fl, err := fleet.NewService(fleet.Options{
		Store: st, Log: log.With("component", "fleet"), Secret: secret,
		TokenTTL: cfg.DeviceTokenTTL, PollInterval: cfg.PollInterval, AuthCacheTTL: cfg.AuthCacheTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet service: %w", err)
	}
	ac := access.NewService(access.Options{Store: st, Log: log.With("component", "access")})
	initial, err := ac.Bootstrap(ctx)
	if err != nil {
		return nil, err
	}
	blobs, sweepBefore, err := openBlobs(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("artifact store: %w", err)
	}
	// Uploads a crash cut short leave partial files or objects.
	if n, err := blobs.Sweep(ctx, sweepBefore); err != nil {
		return nil, fmt.Errorf("artifact store: sweep unfinished uploads: %w", err)
	} else if n > 0 {
		log.Warn("removed unfinished artifact uploads", "count", n)
	}
	repo := tuf.New(tuf.Options{Store: st.TUF(), Log: log.With("component", "tuf")})
	if err := openTUF(ctx, repo, log); err != nil {
		return nil, err
	}
	if err := repo.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("tuf refresh: %w", err)
	}
	rel := release.NewService(release.Options{Store: st, Blobs: blobs, Signer: releaseSigner{repo}, Log: log.With("component", "release")})
	grantCandidate := make([]byte, 32)
	if _, err := rand.Read(grantCandidate); err != nil {
		return nil, fmt.Errorf("download grant secret: %w", err)
	}
	grantSecret, err := st.Secret(ctx, "download-grant-hmac", grantCandidate)
	if err != nil {
		return nil, fmt.Errorf("download grant secret: %w", err)
	}
	grants := release.NewGrants(grantSecret, nil)
	deps := deployment.NewService(deployment.Options{
		Store: st, Fleet: fl, Releases: rel, Grants: grants, TargetPath: TargetPath,
		Log: log.With("component", "deployment"),
	})
	if err := deps.Refresh(ctx); err != nil {
		return nil, err
	}
	fl.SetWorkSource(deps)
	s := &Server{cfg: cfg, log: log, store: st, Fleet: fl, Access: ac, Releases: rel, blobs: blobs, TUF: repo,
		Grants: grants, Deployments: deps, InitialToken: initial}
	s.handler = s.routes()

	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopBG = cancel
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fl.Run(bgCtx, cfg.SeenFlush)
	}()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		refreshTUF(bgCtx, repo, 10*time.Minute, log)
	}()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		deps.Run(bgCtx, cfg.SchedulerInterval)
	}()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.delivery.run(bgCtx, deps, time.Minute, log)
	}()
	return s, nil
}

// openBlobs opens the configured artifact store and says which unfinished uploads are
// certainly dead: all of them in a private folder, those older than a day in a bucket that
// other replicas may be writing to.
func openBlobs(ctx context.Context, cfg config.Server) (blob.Store, time.Time, error) {
	if cfg.S3Endpoint == "" {
		st, err := localfs.Open(filepath.Join(cfg.Data, "artifacts"))
		return st, time.Now(), err
	}
	st, err := s3.Open(ctx, s3.Options{
		Endpoint: cfg.S3Endpoint, Bucket: cfg.S3Bucket, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey,
		UseSSL: cfg.S3TLS, Region: cfg.S3Region, Prefix: cfg.S3Prefix,
	})
	return st, time.Now().Add(-24 * time.Hour), err
}

// Handler is the server's whole HTTP surface.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_http_requests_total", Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "rampart_http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	reg.MustRegister(requests, duration)
	s.delivery = newDeliveryGauges(reg)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		jsonhttp.Write(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.store.Ping(ctx); err != nil {
			s.log.WarnContext(ctx, "not ready", "err", err)
			jsonhttp.Write(w, http.StatusServiceUnavailable, map[string]string{"status": "database unavailable"})
			return
		}
		jsonhttp.Write(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	api.New(s.Fleet, s.Access, s.Releases, s.Deployments, s.log.With("component", "api")).Register(mux)
	native.New(native.Options{Fleet: s.Fleet, Releases: s.Releases, Grants: s.Grants, TUF: s.TUF, Deployments: s.Deployments, Log: s.log.With("component", "deviceapi")}).Routes(mux)

	return jsonhttp.WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(sw, r)
		route := r.Pattern // set by the mux on the request it was given
		if route == "" {
			route = "unmatched"
		}
		requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}))
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Serve answers HTTP on ln until ctx ends, then drains in-flight requests.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // inventory and, later, artifact uploads
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Close stops background work (flushing buffered state) and closes the store.
func (s *Server) Close() error {
	s.stopBG()
	s.bg.Wait()
	return s.store.Close()
}

// CreateToken makes an API token directly in the configured store, for
// `rampart admin token create` on the server host.
func CreateToken(ctx context.Context, cfg config.Server, log *slog.Logger, name string, role access.Role, ttl time.Duration) (*access.Token, access.Secret, error) {
	st, err := OpenStore(ctx, cfg, log)
	if err != nil {
		return nil, "", fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	return access.NewService(access.Options{Store: st, Log: log}).CreateToken(ctx, name, role, ttl)
}
