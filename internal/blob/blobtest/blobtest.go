// Package blobtest is the conformance suite every blob.Store backend must pass: streaming
// Put with digest and size, refusal of truncated, corrupt and oversized uploads without
// leftovers, seekable reads for Range requests, not-found and invalid-digest errors,
// cancellation and concurrency. It is test support only: production code never imports it.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/blob"
)

// Run runs the suite. newStore must return an empty store of its own on every call; the
// subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"PutSameContentTwice", testPutSameContentTwice},
		{"PutRefused", nil}, // table below, one store per case
		{"PutReadError", testPutReadError},
		{"PutCancelled", testPutCancelled},
		{"PutConcurrentSameContent", testPutConcurrentSameContent},
		{"OpenSeek", testOpenSeek},
		{"ServeRange", testServeRange},
		{"NotFound", testNotFound},
		{"InvalidDigest", testInvalidDigest},
		{"Walk", testWalk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.fn == nil {
				testPutRefused(t, newStore)
				return
			}
			tt.fn(t, newStore(t))
		})
	}
}

// Content returns n deterministic pseudo-random bytes, different for each seed.
func Content(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 1})
	_, _ = r.Read(b)
	return b
}

// Digest returns the lowercase hex SHA-256 of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// MustPut stores b, failing the test on error.
func MustPut(t testing.TB, s blob.Store, b []byte) blob.Info {
	t.Helper()
	info, err := s.Put(t.Context(), bytes.NewReader(b), blob.Expect{Size: int64(len(b)), SHA256: Digest(b)})
	if err != nil {
		t.Fatalf("Put(%d bytes) = %v", len(b), err)
	}
	return info
}

// MustHoldNothingElse fails the test unless the store holds exactly the blobs want and
// nothing of an unfinished upload: Sweep with a cutoff in the future must find nothing,
// because every failed Put cleans up after itself.
func MustHoldNothingElse(t testing.TB, s blob.Store, want ...string) {
	t.Helper()
	var got []string
	if err := s.Walk(t.Context(), func(i blob.Info) error { got = append(got, i.Digest); return nil }); err != nil {
		t.Fatalf("Walk = %v", err)
	}
	if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(want)) {
		t.Errorf("Walk found blobs %v, want %v", got, want)
	}
	n, err := s.Sweep(t.Context(), time.Now().Add(time.Hour))
	if err != nil || n != 0 {
		t.Errorf("Sweep(in an hour) = %d, %v; want 0 leftovers, nil", n, err)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func testRoundTrip(t *testing.T, s blob.Store) {
	sizes := []int{0, 1, 1000, 3 << 20}
	if !testing.Short() {
		sizes = append(sizes, 20<<20) // past one S3 part (16 MiB): multipart upload and copy
	}
	var digests []string
	for i, n := range sizes {
		for _, known := range []bool{false, true} {
			b := Content(n, uint64(i))
			want := blob.Expect{Size: -1}
			if known {
				want = blob.Expect{Size: int64(n), SHA256: Digest(b), MaxSize: int64(n)}
			}
			info, err := s.Put(t.Context(), bytes.NewReader(b), want)
			if err != nil {
				t.Fatalf("Put(%d bytes, %+v) = %v", n, want, err)
			}
			if info.Digest != Digest(b) || info.Size != int64(n) || info.ModTime.IsZero() {
				t.Errorf("Put(%d bytes) = %+v, want digest %s, size %d, a mod time", n, info, Digest(b), n)
			}
			st, err := s.Stat(t.Context(), info.Digest)
			if err != nil || st.Digest != info.Digest || st.Size != info.Size {
				t.Errorf("Stat(%s) = %+v, %v; want %+v", info.Digest, st, err, info)
			}
			o, err := s.Open(t.Context(), info.Digest)
			if err != nil {
				t.Fatalf("Open(%s) = %v", info.Digest, err)
			}
			got, err := io.ReadAll(o)
			o.Close()
			if err != nil || !bytes.Equal(got, b) {
				t.Errorf("Open(%s) read %d bytes, %v; want the %d bytes put", info.Digest, len(got), err, n)
			}
			if oi := o.Info(); oi.Digest != info.Digest || oi.Size != info.Size {
				t.Errorf("Open(%s).Info() = %+v, want %+v", info.Digest, oi, info)
			}
			if !known {
				digests = append(digests, info.Digest)
			}
		}
	}
	MustHoldNothingElse(t, s, digests...)
}

func testPutSameContentTwice(t *testing.T, s blob.Store) {
	b := Content(4096, 7)
	first := MustPut(t, s, b)
	second, err := s.Put(t.Context(), bytes.NewReader(b), blob.Expect{Size: -1})
	if err != nil || second.Digest != first.Digest || second.Size != first.Size {
		t.Errorf("second Put = %+v, %v; want %+v", second, err, first)
	}
	MustHoldNothingElse(t, s, first.Digest)
}

func testPutRefused(t *testing.T, newStore func(t *testing.T) blob.Store) {
	b := Content(100_000, 3)
	corrupt := bytes.Clone(b)
	corrupt[50_000] ^= 1
	tests := []struct {
		name    string
		content []byte
		want    blob.Expect
		kind    error
	}{
		{"truncated", b[:99_999], blob.Expect{Size: 100_000, SHA256: Digest(b)}, rampart.ErrInvalid},
		{"truncated, size only", b[:60_000], blob.Expect{Size: 100_000}, rampart.ErrInvalid},
		{"longer than expected", b, blob.Expect{Size: 99_999}, rampart.ErrInvalid},
		{"corrupt", corrupt, blob.Expect{Size: 100_000, SHA256: Digest(b)}, rampart.ErrInvalid},
		{"corrupt, hash only", corrupt, blob.Expect{Size: -1, SHA256: Digest(b)}, rampart.ErrInvalid},
		{"over MaxSize", b, blob.Expect{Size: -1, MaxSize: 99_999}, rampart.ErrTooLarge},
		{"expected size over MaxSize", b, blob.Expect{Size: 100_000, MaxSize: 10}, rampart.ErrTooLarge},
		{"malformed expected hash", b, blob.Expect{Size: -1, SHA256: strings.ToUpper(Digest(b))}, rampart.ErrInvalid},
		{"negative size", b, blob.Expect{Size: -2}, rampart.ErrInvalid},
		{"zero value Expect means empty", b, blob.Expect{}, rampart.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			info, err := s.Put(t.Context(), bytes.NewReader(tt.content), tt.want)
			if !errors.Is(err, tt.kind) {
				t.Errorf("Put(%d bytes, %+v) = %+v, %v; want %v", len(tt.content), tt.want, info, err, tt.kind)
			}
			MustHoldNothingElse(t, s)
		})
	}
}

// failingReader returns n bytes of content, then err: a client that hung up mid-upload.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	p = p[:min(len(p), r.n)]
	clear(p)
	r.n -= len(p)
	return len(p), nil
}

func testPutReadError(t *testing.T, s blob.Store) {
	r := &failingReader{n: 5 << 20, err: io.ErrUnexpectedEOF}
	info, err := s.Put(t.Context(), r, blob.Expect{Size: -1})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Put(body cut after 5 MiB) = %+v, %v; want %v", info, err, io.ErrUnexpectedEOF)
	}
	MustHoldNothingElse(t, s)
}

// endlessReader returns zeros for ever, calling cancel once it has returned after bytes.
type endlessReader struct {
	mu     sync.Mutex
	n      int
	after  int
	cancel func()
}

func (r *endlessReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(p)
	r.n += len(p)
	if r.n >= r.after && r.cancel != nil {
		r.cancel()
		r.cancel = nil
	}
	return len(p), nil
}

func testPutCancelled(t *testing.T, s blob.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := &endlessReader{after: 1 << 20, cancel: cancel}
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, r, blob.Expect{Size: -1})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Put(endless, cancelled after 1 MiB) = %v, want %v", err, context.Canceled)
		}
	case <-time.After(time.Minute):
		t.Fatal("Put(endless, cancelled after 1 MiB) still running a minute later")
	}
	MustHoldNothingElse(t, s)
}

func testPutConcurrentSameContent(t *testing.T, s blob.Store) {
	b := Content(1<<20, 11)
	const n = 8
	var wg sync.WaitGroup
	infos := make([]blob.Info, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			infos[i], errs[i] = s.Put(t.Context(), bytes.NewReader(b), blob.Expect{Size: int64(len(b)), SHA256: Digest(b)})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || infos[i].Digest != Digest(b) || infos[i].Size != int64(len(b)) {
			t.Errorf("concurrent Put #%d = %+v, %v; want digest %s", i, infos[i], errs[i], Digest(b))
		}
	}
	MustHoldNothingElse(t, s, Digest(b))
	o, err := s.Open(t.Context(), Digest(b))
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer o.Close()
	if got, err := io.ReadAll(o); err != nil || !bytes.Equal(got, b) {
		t.Errorf("after concurrent Puts, Open read %d bytes, %v; want the content", len(got), err)
	}
}

func testOpenSeek(t *testing.T, s blob.Store) {
	b := Content(10_000, 5)
	info := MustPut(t, s, b)
	o, err := s.Open(t.Context(), info.Digest)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer o.Close()
	tests := []struct {
		offset int64
		whence int
		pos    int64
		n      int
	}{
		{10, io.SeekStart, 10, 20},
		{100, io.SeekCurrent, 130, 50},
		{-5, io.SeekEnd, 9995, 5},
		{0, io.SeekStart, 0, 10_000},
		{9000, io.SeekStart, 9000, 1000},
	}
	for _, tt := range tests {
		pos, err := o.Seek(tt.offset, tt.whence)
		if err != nil || pos != tt.pos {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", tt.offset, tt.whence, pos, err, tt.pos)
		}
		got := make([]byte, tt.n)
		if _, err := io.ReadFull(o, got); err != nil || !bytes.Equal(got, b[pos:pos+int64(tt.n)]) {
			t.Errorf("after Seek(%d, %d), read %d bytes = %v or wrong bytes", tt.offset, tt.whence, tt.n, err)
		}
	}
	if end, err := o.Seek(0, io.SeekEnd); err != nil || end != int64(len(b)) {
		t.Errorf("Seek(0, end) = %d, %v; want %d", end, err, len(b))
	}
}

// testServeRange resumes an interrupted download the way the device API will serve it.
func testServeRange(t *testing.T, s blob.Store) {
	b := Content(50_000, 9)
	info := MustPut(t, s, b)
	serve := func(h http.Header) *httptest.ResponseRecorder {
		o, err := s.Open(t.Context(), info.Digest)
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		defer o.Close()
		req := httptest.NewRequest(http.MethodGet, "/artifact", nil)
		req.Header = h
		w := httptest.NewRecorder()
		w.Header().Set("ETag", `"`+o.Info().Digest+`"`)
		http.ServeContent(w, req, "", o.Info().ModTime, o)
		return w
	}
	w := serve(http.Header{"Range": {"bytes=10-"}})
	if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), b[10:]) {
		t.Errorf("GET Range: bytes=10- = %d with %d bytes, want 206 with %d bytes", w.Code, w.Body.Len(), len(b)-10)
	}
	w = serve(http.Header{"Range": {"bytes=49990-49999"}, "If-Range": {`"` + info.Digest + `"`}})
	if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), b[49990:]) {
		t.Errorf("GET Range: bytes=49990-49999 = %d with %q, want 206 with the last 10 bytes", w.Code, w.Body.Bytes())
	}
	w = serve(http.Header{"If-None-Match": {`"` + info.Digest + `"`}})
	if w.Code != http.StatusNotModified {
		t.Errorf("GET If-None-Match: digest = %d, want 304", w.Code)
	}
}

func testNotFound(t *testing.T, s blob.Store) {
	missing := Digest([]byte("never stored"))
	if _, err := s.Stat(t.Context(), missing); !errors.Is(err, rampart.ErrNotFound) {
		t.Errorf("Stat(missing) = %v, want %v", err, rampart.ErrNotFound)
	}
	if o, err := s.Open(t.Context(), missing); !errors.Is(err, rampart.ErrNotFound) {
		if err == nil {
			o.Close()
		}
		t.Errorf("Open(missing) = %v, want %v", err, rampart.ErrNotFound)
	}
	if err := s.Delete(t.Context(), missing); !errors.Is(err, rampart.ErrNotFound) {
		t.Errorf("Delete(missing) = %v, want %v", err, rampart.ErrNotFound)
	}

	info := MustPut(t, s, []byte("short-lived"))
	if err := s.Delete(t.Context(), info.Digest); err != nil {
		t.Fatalf("Delete(stored) = %v", err)
	}
	if _, err := s.Stat(t.Context(), info.Digest); !errors.Is(err, rampart.ErrNotFound) {
		t.Errorf("Stat(deleted) = %v, want %v", err, rampart.ErrNotFound)
	}
	MustHoldNothingElse(t, s)
	MustPut(t, s, []byte("short-lived")) // and it can come back
}

func testInvalidDigest(t *testing.T, s blob.Store) {
	valid := MustPut(t, s, []byte("x")).Digest
	bad := []string{
		"",
		"../../../../etc/passwd",
		strings.ToUpper(valid),
		valid[:63],
		valid + "0",
		valid[:62] + "/x",
		"sha256:" + valid[7:],
		strings.Repeat(".", 64),
		valid[:2] + "/../" + valid[6:],
	}
	for _, d := range bad {
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("Stat(%q) = %v, want %v", d, err, rampart.ErrInvalid)
		}
		if o, err := s.Open(t.Context(), d); !errors.Is(err, rampart.ErrInvalid) {
			if err == nil {
				o.Close()
			}
			t.Errorf("Open(%q) = %v, want %v", d, err, rampart.ErrInvalid)
		}
		if err := s.Delete(t.Context(), d); !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("Delete(%q) = %v, want %v", d, err, rampart.ErrInvalid)
		}
		if _, _, err := s.PresignGet(t.Context(), d, time.Minute); !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("PresignGet(%q) = %v, want %v", d, err, rampart.ErrInvalid)
		}
	}
	MustHoldNothingElse(t, s, valid)
}

func testWalk(t *testing.T, s blob.Store) {
	var want []string
	for i := range 5 {
		want = append(want, MustPut(t, s, Content(100+i, uint64(i))).Digest)
	}
	MustHoldNothingElse(t, s, want...)
	stop := errors.New("stop")
	calls := 0
	err := s.Walk(t.Context(), func(blob.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk(fn failing) = %v after %d calls, want %v after 1", err, calls, stop)
	}
}
