package tufclient_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rampart-iot/rampart/internal/agent/tufclient"
)

// newBigTarget publishes a 1 MiB random image as releases/acme/big.img.
func newBigTarget(t *testing.T) (*testRepo, []byte) {
	t.Helper()
	r, _ := newPublishedRepo(t)
	rng := rand.New(rand.NewPCG(3, 4))
	img := make([]byte, 1<<20+123)
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	r.publish("releases/acme/big.img", img, "2.0.0", deviceType)
	return r, img
}

func (r *testRepo) counters() (served int64, ranges []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.served, slices.Clone(r.ranges)
}

func (r *testRepo) set(f func(r *testRepo)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func mustFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s holds %d bytes (%v), want the %d-byte image", path, len(got), err, len(want))
	}
}

// partFiles lists the partial downloads in dir.
func partFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for name := range dirState(t, dir) {
		if strings.HasSuffix(name, ".part") {
			out = append(out, name)
		}
	}
	return out
}

// TestDownloadResumes cuts the connection in the middle of a download; the next Download asks
// for the rest with a Range request and the server sends only the missing bytes.
func TestDownloadResumes(t *testing.T) {
	t.Parallel()
	r, img := newBigTarget(t)
	c, _ := r.newClient(deviceType, "")
	dir := t.TempDir()
	dest := filepath.Join(dir, "big.img")
	const cut = 400_000
	r.set(func(r *testRepo) { r.cutAt = cut })

	if err := c.Download(t.Context(), "releases/acme/big.img", dest); err == nil {
		t.Fatal("Download() through a dropped connection succeeded")
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("the destination exists after an interrupted download")
	}
	if parts := partFiles(t, dir); len(parts) != 1 {
		t.Fatalf("partial files after the drop: %v, want one", parts)
	}
	served1, _ := r.counters()
	if served1 != cut {
		t.Fatalf("served %d bytes before the drop, want %d", served1, cut)
	}

	if err := c.Download(t.Context(), "releases/acme/big.img", dest); err != nil {
		t.Fatalf("resumed Download() = %v", err)
	}
	mustFile(t, dest, img)
	served2, ranges := r.counters()
	if got, want := served2-served1, int64(len(img))-cut; got != want {
		t.Errorf("the resumed download sent %d bytes, want only the remaining %d", got, want)
	}
	if !slices.Equal(ranges, []string{"bytes=400000-"}) {
		t.Errorf("range requests %q, want one from byte 400000", ranges)
	}
	if parts := partFiles(t, dir); len(parts) != 0 {
		t.Errorf("partial files left after success: %v", parts)
	}
}

// TestDownloadResumeStartsOver covers the answers that make a resumed download start from
// nothing: a server that ignores Range, and kept bytes that turn out to be wrong.
func TestDownloadResumeStartsOver(t *testing.T) {
	t.Parallel()
	t.Run("server ignores range", func(t *testing.T) {
		t.Parallel()
		r, img := newBigTarget(t)
		c, _ := r.newClient(deviceType, "")
		dest := filepath.Join(t.TempDir(), "big.img")
		r.set(func(r *testRepo) { r.cutAt = 300_000 })
		if err := c.Download(t.Context(), "releases/acme/big.img", dest); err == nil {
			t.Fatal("Download() through a dropped connection succeeded")
		}
		r.set(func(r *testRepo) { r.ignoreRange = true })
		before, _ := r.counters()
		if err := c.Download(t.Context(), "releases/acme/big.img", dest); err != nil {
			t.Fatalf("Download() from a server without ranges = %v", err)
		}
		mustFile(t, dest, img)
		if after, _ := r.counters(); after-before != int64(len(img)) {
			t.Errorf("sent %d bytes, want the whole %d-byte file", after-before, len(img))
		}
	})
	t.Run("kept bytes are garbage", func(t *testing.T) {
		t.Parallel()
		r, img := newBigTarget(t)
		c, _ := r.newClient(deviceType, "")
		dir := t.TempDir()
		dest := filepath.Join(dir, "big.img")
		r.set(func(r *testRepo) { r.cutAt = 300_000 })
		if err := c.Download(t.Context(), "releases/acme/big.img", dest); err == nil {
			t.Fatal("Download() through a dropped connection succeeded")
		}
		// A power loss left zeros where unsynced data should have been.
		part := filepath.Join(dir, partFiles(t, dir)[0])
		f, err := os.OpenFile(part, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(make([]byte, 4096), 200_000); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := c.Download(t.Context(), "releases/acme/big.img", dest); err != nil {
			t.Fatalf("Download() after a damaged partial file = %v", err)
		}
		mustFile(t, dest, img)
	})
	t.Run("partial file of another target", func(t *testing.T) {
		t.Parallel()
		r, img := newBigTarget(t)
		c, _ := r.newClient(deviceType, "")
		dir := t.TempDir()
		dest := filepath.Join(dir, "big.img")
		stale := filepath.Join(dir, ".big.img."+strings.Repeat("ab", 32)+".part")
		if err := os.WriteFile(stale, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.Download(t.Context(), "releases/acme/big.img", dest); err != nil {
			t.Fatalf("Download() = %v", err)
		}
		mustFile(t, dest, img)
		if _, err := os.Stat(stale); err == nil {
			t.Error("the partial download of another target was left behind")
		}
	})
}

func TestFetchNeedsTargetInfo(t *testing.T) {
	t.Parallel()
	r, fw := newPublishedRepo(t)
	c, _ := r.newClient(deviceType, "")
	dir := t.TempDir()
	err := c.Fetch(t.Context(), tufclient.TargetInfo{Path: "releases/acme/fw.swu", Length: int64(len(fw))}, filepath.Join(dir, "fw"))
	mustErrorIs(t, "Fetch(made-up info)", err, tufclient.ErrMismatch)
	mustNoFiles(t, dir)
	info, err := c.Target(t.Context(), "releases/acme/fw.swu")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Fetch(t.Context(), info, filepath.Join(dir, "fw")); err != nil {
		t.Fatalf("Fetch(Target()) = %v", err)
	}
	mustFile(t, filepath.Join(dir, "fw"), fw)
}
