package delta

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/rampart-iot/rampart"
)

// seedPair is the old and new image of fuzz seed i: the old image is a deterministic
// function of its size, so FuzzApply can rebuild it from the size in the patch header.
func seedPair(seed uint64, size int) (old, nw []byte) {
	old = seedBase(size)
	r := rand.New(rand.NewPCG(seed, 2))
	nw = bytes.Clone(old)
	for range 5 {
		if len(nw) > 0 {
			nw[r.IntN(len(nw))] ^= byte(r.Uint32()) | 1
		}
	}
	return old, append(nw, "appended"...)
}

func seedBase(size int) []byte {
	r := rand.New(rand.NewPCG(uint64(size), 3))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.IntN(16))
	}
	return b
}

// limitWriter fails the test if more than max bytes are written.
type limitWriter struct {
	t   *testing.T
	max int64
	n   int64
}

func (w *limitWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n > w.max {
		w.t.Fatalf("Apply wrote %d bytes, the header declares %d", w.n, w.max)
	}
	return len(p), nil
}

func FuzzApply(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.patch"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, patch []byte) {
		h, herr := ParseHeader(patch)
		size := int64(0)
		if herr == nil && h.OldSize <= 1<<16 {
			size = h.OldSize
		}
		old := seedBase(int(size))
		w := &limitWriter{t: t, max: 0}
		if herr == nil {
			w.max = h.NewSize
		}
		err := Apply(t.Context(), bytes.NewReader(old), size, bytes.NewReader(patch), w)
		if err != nil && !errors.Is(err, rampart.ErrInvalid) {
			t.Fatalf("Apply() error %v, want one wrapping rampart.ErrInvalid", err)
		}
		if err == nil && w.n != h.NewSize {
			t.Fatalf("Apply() wrote %d bytes and succeeded, header declares %d", w.n, h.NewSize)
		}
	})
}
