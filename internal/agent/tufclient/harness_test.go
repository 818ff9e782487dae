package tufclient_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/tufclient"
	"github.com/rampart-iot/rampart/internal/tuf"
	"github.com/rampart-iot/rampart/internal/tuf/tuftest"
)

const (
	releaser   = "releases-acme"
	deviceType = "gw-x"
)

// clock is the shared fake time of repository and client.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// tamperFunc sees every response the proxy is about to send (request path below /metadata/
// or /targets/, and the genuine body) and returns the body to send instead.
type tamperFunc func(path string, genuine []byte) []byte

// testRepo is a real internal/tuf repository served over HTTP on 127.0.0.1 through a
// man-in-the-middle whose behaviour each test sets.
type testRepo struct {
	t     testing.TB
	clock *clock
	store *tuftest.Store
	repo  *tuf.Repository
	srv   *httptest.Server

	mu        sync.Mutex
	artifacts map[string][]byte // by consistent-snapshot name
	tamper    tamperFunc
	extra     map[string][]byte // documents the attacker adds, by request path without "/"
	chunked   bool              // send bodies without Content-Length

	// Targets are served with Range support (http.ServeContent) unless chunked.
	cutAt       int64    // abort the connection after this many bytes of the next target body
	ignoreRange bool     // answer range requests with the whole file
	served      int64    // target body bytes sent
	ranges      []string // Range headers of target requests
}

func newTestRepo(t testing.TB, init tuf.InitOptions) *testRepo {
	t.Helper()
	r := &testRepo{
		t:         t,
		clock:     &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		store:     tuftest.NewStore(),
		artifacts: map[string][]byte{},
		extra:     map[string][]byte{},
	}
	r.repo = tuf.New(tuf.Options{Store: r.store, Now: r.clock.Now})
	ctx := t.Context()
	if err := r.repo.Init(ctx, init); err != nil {
		t.Fatalf("Init() = %v", err)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// newPublishedRepo is a repository with an online root, a releaser and one firmware target.
func newPublishedRepo(t testing.TB) (*testRepo, []byte) {
	t.Helper()
	r := newTestRepo(t, tuf.InitOptions{})
	if err := r.repo.Delegate(t.Context(), releaser, []string{"releases/acme/*"}); err != nil {
		t.Fatalf("Delegate() = %v", err)
	}
	fw := []byte("firmware 1.0.0 for gw-x\n")
	r.publish("releases/acme/fw.swu", fw, "1.0.0", deviceType)
	return r, fw
}

func (r *testRepo) serve(w http.ResponseWriter, req *http.Request) {
	var body []byte
	r.mu.Lock()
	extra, ok := r.extra[strings.TrimPrefix(req.URL.Path, "/")]
	r.mu.Unlock()
	if ok {
		w.Write(extra)
		return
	}
	name, isMeta := strings.CutPrefix(req.URL.Path, "/metadata/")
	if isMeta {
		data, err := r.repo.Metadata(req.Context(), name)
		if errors.Is(err, rampart.ErrNotFound) {
			http.NotFound(w, req)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body = data
	} else if name, ok := strings.CutPrefix(req.URL.Path, "/targets/"); ok {
		r.mu.Lock()
		data, ok := r.artifacts[name]
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		body = data
	} else {
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	tamper, chunked := r.tamper, r.chunked
	r.mu.Unlock()
	if tamper != nil {
		body = tamper(strings.TrimPrefix(req.URL.Path, "/"), body)
	}
	if !isMeta && !chunked {
		r.serveTarget(w, req, body)
		return
	}
	if chunked {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
	}
	w.Write(body)
}

// serveTarget serves a target body with Range support, counting the bytes sent and cutting
// the connection at cutAt once.
func (r *testRepo) serveTarget(w http.ResponseWriter, req *http.Request, body []byte) {
	r.mu.Lock()
	cut := r.cutAt
	r.cutAt = 0
	if req.Header.Get("Range") != "" {
		r.ranges = append(r.ranges, req.Header.Get("Range"))
	}
	if r.ignoreRange {
		req.Header.Del("Range")
	}
	r.mu.Unlock()
	http.ServeContent(&countingWriter{ResponseWriter: w, repo: r, cut: cut}, req, "", time.Time{}, bytes.NewReader(body))
}

// countingWriter counts body bytes into repo.served and, if cut is set, sends only that many
// and then drops the connection, as a failing link would.
type countingWriter struct {
	http.ResponseWriter
	repo    *testRepo
	cut     int64
	written int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	abort := false
	if c.cut > 0 && c.written+int64(len(p)) >= c.cut {
		p, abort = p[:c.cut-c.written], true
	}
	n, err := c.ResponseWriter.Write(p)
	c.written += int64(n)
	c.repo.mu.Lock()
	c.repo.served += int64(n)
	c.repo.mu.Unlock()
	if abort {
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	return n, err
}

func (r *testRepo) setTamper(f tamperFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tamper = f
}

func (r *testRepo) publish(path string, data []byte, version string, deviceTypes ...string) {
	r.t.Helper()
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	r.mu.Lock()
	r.artifacts[tuf.TargetFileName(path, h)] = data
	r.mu.Unlock()
	err := r.repo.AddTargets(r.t.Context(), releaser, []tuf.Target{{
		Path: path, Length: int64(len(data)), SHA256: h,
		Custom: map[string]any{tuf.CustomDeviceTypes: deviceTypes, tuf.CustomVersion: version, tuf.CustomRelease: "rel-" + version},
	}})
	if err != nil {
		r.t.Fatalf("AddTargets(%s) = %v", path, err)
	}
}

// metadata returns a document as the repository serves it now.
func (r *testRepo) metadata(name string) []byte {
	r.t.Helper()
	data, err := r.repo.Metadata(r.t.Context(), name)
	if err != nil {
		r.t.Fatalf("Metadata(%s) = %v", name, err)
	}
	return data
}

// newClient provisions a state directory with the repository's root version 1 (as enrollment
// does) and returns a client for device type dt.
func (r *testRepo) newClient(dt, hw string) (*tufclient.Client, string) {
	r.t.Helper()
	dir := r.t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, tufclient.RootFile), r.metadata("1.root.json"), 0o600); err != nil {
		r.t.Fatal(err)
	}
	c, err := tufclient.New(tufclient.Options{
		MetadataURL: r.srv.URL + "/metadata",
		TargetsURL:  r.srv.URL + "/targets",
		StateDir:    dir,
		HTTPClient:  &http.Client{Timeout: 10 * time.Second},
		DeviceType:  dt,
		HWRevision:  hw,
		Now:         r.clock.Now,
	})
	if err != nil {
		r.t.Fatalf("tufclient.New() = %v", err)
	}
	return c, dir
}

// dirState reads every file under dir, so a test can show trusted metadata did not change.
func dirState(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[strings.TrimPrefix(p, dir)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustUnchanged(t testing.TB, dir string, before map[string]string) {
	t.Helper()
	if after := dirState(t, dir); !maps.Equal(before, after) {
		t.Errorf("trusted metadata in %s changed during a refused update:\nbefore %v\nafter  %v", dir, keys(before), keys(after))
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// mustNoFiles fails if dir holds any file (a refused download must leave nothing behind).
func mustNoFiles(t testing.TB, dir string) {
	t.Helper()
	if s := dirState(t, dir); len(s) > 0 {
		t.Errorf("download directory holds %v after a refused download", keys(s))
	}
}

func mustErrorIs(t testing.TB, what string, err, want error) {
	t.Helper()
	t.Logf("%s = %v", what, err)
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v, want an error wrapping %q", what, err, want)
	}
}
