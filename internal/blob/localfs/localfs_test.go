package localfs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/blob"
	"github.com/rampart-iot/rampart/internal/blob/blobtest"
	"github.com/rampart-iot/rampart/internal/blob/localfs"
)

// helperDirEnv, when set, makes the test binary a helper process that uploads an endless
// stream into the blob folder it names, until its parent kills it.
const helperDirEnv = "RAMPART_BLOB_LOCALFS_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperDirEnv); dir != "" {
		os.Exit(uploadForever(dir))
	}
	os.Exit(m.Run())
}

func uploadForever(dir string) int {
	s, err := localfs.Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_, err = s.Put(context.Background(), rand.NewChaCha8([32]byte{}), blob.Expect{Size: -1})
	fmt.Fprintln(os.Stderr, "Put returned:", err) // an endless reader never ends: unreachable
	return 3
}

func newTestStore(t *testing.T) blob.Store {
	t.Helper()
	s, err := localfs.Open(t.TempDir())
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return s
}

func TestSuite(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, newTestStore)
}

func TestLayout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := localfs.Open(dir)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	b := []byte("firmware")
	info := blobtest.MustPut(t, s, b)
	path := filepath.Join(dir, "sha256", info.Digest[:2], info.Digest)
	if got, err := os.ReadFile(path); err != nil || string(got) != string(b) {
		t.Errorf("ReadFile(%s) = %q, %v; want %q", path, got, err, b)
	}
	if entries, err := os.ReadDir(filepath.Join(dir, "incoming")); err != nil || len(entries) != 0 {
		t.Errorf("incoming/ after Put = %v, %v; want empty", entries, err)
	}
}

// TestKilledMidUpload kills a process in the middle of a Put, as a crash or `kill -9` of the
// server would, and shows that the Sweep start-up runs leaves no orphan behind.
func TestKilledMidUpload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Wait until the upload is well under way: at least 8 MiB in incoming/.
	incoming := filepath.Join(dir, "incoming")
	deadline := time.Now().Add(30 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		entries, _ := os.ReadDir(incoming)
		if len(entries) == 1 {
			if fi, err := entries[0].Info(); err == nil && fi.Size() >= 8<<20 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper wrote no 8 MiB to %s within 30 s", incoming)
		}
		<-poll.C
	}
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatalf("kill helper: %v", err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("helper exited cleanly; want killed")
	}

	// The kill left a partial upload, but never a blob.
	s, err := localfs.Open(dir)
	if err != nil {
		t.Fatalf("Open after kill = %v", err)
	}
	if entries, _ := os.ReadDir(incoming); len(entries) != 1 {
		t.Fatalf("incoming/ after kill holds %d files, want the 1 partial upload", len(entries))
	}
	if err := s.Walk(t.Context(), func(i blob.Info) error { return fmt.Errorf("found blob %s", i.Digest) }); err != nil {
		t.Errorf("Walk after kill = %v, want no blobs", err)
	}

	// A cutoff before the upload's last write keeps it (it could still be running) ...
	if n, err := s.Sweep(t.Context(), time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("Sweep(an hour ago) = %d, %v; want 0, nil", n, err)
	}
	// ... and start-up's cutoff removes it.
	if n, err := s.Sweep(t.Context(), time.Now()); err != nil || n != 1 {
		t.Errorf("Sweep(now) = %d, %v; want 1, nil", n, err)
	}
	for _, sub := range []string{"incoming", "sha256"} {
		if entries, err := os.ReadDir(filepath.Join(dir, sub)); err != nil || len(entries) != 0 {
			t.Errorf("%s/ after Sweep = %v, %v; want empty", sub, entries, err)
		}
	}
}

// TestPutFlatMemory streams 512 MiB and checks the heap never holds more than a few buffers.
func TestPutFlatMemory(t *testing.T) {
	// Not parallel: it measures the whole process's heap.
	if testing.Short() {
		t.Skip("streams 512 MiB")
	}
	const size = 512 << 20
	const limit = 32 << 20
	gen := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{42}), size) }
	h := sha256.New()
	if _, err := io.Copy(h, gen()); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))

	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	s := newTestStore(t)
	info, err := s.Put(t.Context(), gen(), blob.Expect{Size: size, SHA256: want})
	close(stop)
	<-sampled
	if err != nil || info.Size != size || info.Digest != want {
		t.Fatalf("Put(512 MiB) = %+v, %v; want size %d, digest %s", info, err, size, want)
	}
	if p := peak.Load(); p > limit {
		t.Errorf("heap in use peaked at %d MiB during Put(512 MiB), want under %d MiB", p>>20, limit>>20)
	} else {
		t.Logf("heap in use peaked at %.1f MiB", float64(p)/(1<<20))
	}
}
