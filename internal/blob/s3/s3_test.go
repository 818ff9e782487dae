package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/rampart-iot/rampart/internal/blob"
	"github.com/rampart-iot/rampart/internal/blob/blobtest"
	"github.com/rampart-iot/rampart/internal/blob/s3"
	"github.com/rampart-iot/rampart/internal/blob/s3/s3test"
)

// helperEnv, when set to JSON s3.Options, makes the test binary a helper process that
// uploads an endless stream into that store until its parent kills it.
const helperEnv = "RAMPART_BLOB_S3_HELPER_OPTIONS"

func TestMain(m *testing.M) {
	if opts := os.Getenv(helperEnv); opts != "" {
		os.Exit(uploadForever(opts))
	}
	os.Exit(m.Run())
}

func uploadForever(opts string) int {
	var o s3.Options
	if err := json.Unmarshal([]byte(opts), &o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := s3.Open(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_, err = s.Put(context.Background(), rand.Reader, blob.Expect{Size: -1})
	fmt.Fprintln(os.Stderr, "Put returned:", err) // an endless reader never ends: unreachable
	return 3
}

func mustOpen(t *testing.T, o s3.Options) *s3.Store {
	t.Helper()
	s, err := s3.Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open(%v) = %v", o, err)
	}
	return s
}

// rawClient reaches the same bucket without the Store, to see and plant what a crash leaves.
func rawClient(t *testing.T, o s3.Options) *minio.Core {
	t.Helper()
	c, err := minio.NewCore(o.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""), Region: o.Region})
	if err != nil {
		t.Fatalf("minio.NewCore = %v", err)
	}
	return c
}

// keys lists every object key and unfinished multipart upload in the bucket.
func keys(t *testing.T, c *minio.Core, bucket string) []string {
	t.Helper()
	var got []string
	for oi := range c.Client.ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatalf("ListObjects = %v", oi.Err)
		}
		got = append(got, oi.Key)
	}
	for u := range c.ListIncompleteUploads(t.Context(), bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("ListIncompleteUploads = %v", u.Err)
		}
		got = append(got, "unfinished upload of "+u.Key)
	}
	return got
}

func TestSuite(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	blobtest.Run(t, func(t *testing.T) blob.Store { return mustOpen(t, srv.Options()) })
}

func TestPresignGetRange(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	s := mustOpen(t, srv.Options())
	b := blobtest.Content(100_000, 1)
	info := blobtest.MustPut(t, s, b)
	u, ok, err := s.PresignGet(t.Context(), info.Digest, time.Minute)
	if err != nil || !ok || !strings.HasPrefix(u, "http://127.0.0.1:") {
		t.Fatalf("PresignGet = %q, %v, %v; want a loopback URL, true, nil", u, ok, err)
	}
	tests := []struct {
		rng  string
		code int
		want []byte
	}{
		{"", http.StatusOK, b},
		{"bytes=10-", http.StatusPartialContent, b[10:]},
		{"bytes=99990-99999", http.StatusPartialContent, b[99990:]},
	}
	for _, tt := range tests {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		if tt.rng != "" {
			req.Header.Set("Range", tt.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET presigned, Range %q: %v", tt.rng, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tt.code || !bytes.Equal(got, tt.want) {
			t.Errorf("GET presigned, Range %q = %d with %d bytes, %v; want %d with %d bytes", tt.rng, resp.StatusCode, len(got), err, tt.code, len(tt.want))
		}
	}

	missing := blobtest.Digest([]byte("never stored"))
	if _, _, err := s.PresignGet(t.Context(), missing, time.Minute); err == nil {
		t.Errorf("PresignGet(missing) succeeded, want an error")
	}
}

// TestSweep plants what a crash leaves (an incoming object, an unfinished multipart upload)
// and checks that Sweep removes exactly those older than its cutoff.
func TestSweep(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	o := srv.Options()
	s := mustOpen(t, o)
	kept := blobtest.MustPut(t, s, []byte("a blob that stays"))
	c := rawClient(t, o)
	ctx := t.Context()
	if _, err := c.PutObject(ctx, o.Bucket, o.Prefix+"incoming/crashed", bytes.NewReader([]byte("partial")), 7, "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatalf("plant incoming object: %v", err)
	}
	if _, err := c.NewMultipartUpload(ctx, o.Bucket, o.Prefix+"incoming/crashed-multipart", minio.PutObjectOptions{}); err != nil {
		t.Fatalf("plant multipart upload: %v", err)
	}
	if n, err := s.Sweep(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("Sweep(an hour ago) = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.Sweep(ctx, time.Now().Add(time.Minute)); err != nil || n != 2 {
		t.Errorf("Sweep(in a minute) = %d, %v; want 2, nil", n, err)
	}
	want := []string{o.Prefix + "sha256/" + kept.Digest}
	if got := keys(t, c, o.Bucket); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("bucket after Sweep holds %q, want %q", got, want)
	}
}

// TestKilledMidUpload kills a process in the middle of a multipart Put and shows that Sweep,
// as start-up runs it, leaves no object and no unfinished upload behind.
func TestKilledMidUpload(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	o := srv.Options()
	s := mustOpen(t, o) // creates the bucket
	c := rawClient(t, o)
	js, _ := json.Marshal(o)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Wait until the upload has sent at least one part.
	deadline := time.Now().Add(60 * time.Second)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for !hasUploadedPart(t, c, o.Bucket) {
		if time.Now().After(deadline) {
			t.Fatal("helper uploaded no part within 60 s")
		}
		<-poll.C
	}
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatalf("kill helper: %v", err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("helper exited cleanly; want killed")
	}
	if got := keys(t, c, o.Bucket); len(got) != 1 || !strings.HasPrefix(got[0], "unfinished upload of "+o.Prefix+"incoming/") {
		t.Fatalf("bucket after kill holds %q, want one unfinished incoming upload", got)
	}
	if n, err := s.Sweep(t.Context(), time.Now().Add(time.Minute)); err != nil || n != 1 {
		t.Errorf("Sweep = %d, %v; want 1, nil", n, err)
	}
	if got := keys(t, c, o.Bucket); len(got) != 0 {
		t.Errorf("bucket after Sweep holds %q, want nothing", got)
	}
}

func hasUploadedPart(t *testing.T, c *minio.Core, bucket string) bool {
	t.Helper()
	for u := range c.ListIncompleteUploads(t.Context(), bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("ListIncompleteUploads = %v", u.Err)
		}
		parts, err := c.ListObjectParts(t.Context(), bucket, u.Key, u.UploadID, 0, 10)
		if err == nil && len(parts.ObjectParts) > 0 {
			return true
		}
	}
	return false
}
