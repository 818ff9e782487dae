package delta

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/rampart-iot/rampart"
)

// mustEncode returns the patch from old to nw.
func mustEncode(t testing.TB, old, nw []byte, opts EncodeOptions) []byte {
	t.Helper()
	var p bytes.Buffer
	if err := Encode(t.Context(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(nw), &p, opts); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return p.Bytes()
}

func apply(t testing.TB, old, patch []byte) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	err := Apply(t.Context(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), &out)
	return out.Bytes(), err
}

// synthetic returns an old image of n bytes that looks like firmware (runs of structured,
// repeated and random bytes) and a new image derived from it by the given edits.
func synthetic(seed uint64, n int, edit func(r *rand.Rand, b []byte) []byte) (old, nw []byte) {
	r := rand.New(rand.NewPCG(seed, 1))
	old = make([]byte, 0, n)
	for len(old) < n {
		switch r.IntN(3) {
		case 0: // random
			for range r.IntN(2048) {
				old = append(old, byte(r.Uint32()))
			}
		case 1: // table of little-endian addresses
			base := r.Uint32()
			for i := range r.IntN(512) {
				v := base + uint32(i*16)
				old = append(old, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
			}
		default: // padding
			old = append(old, make([]byte, r.IntN(4096))...)
		}
	}
	old = old[:n]
	return old, edit(r, bytes.Clone(old))
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		size int
		edit func(r *rand.Rand, b []byte) []byte
	}{
		{"identical", 200 << 10, func(_ *rand.Rand, b []byte) []byte { return b }},
		{"empty new", 10 << 10, func(_ *rand.Rand, b []byte) []byte { return nil }},
		{"empty old", 0, func(r *rand.Rand, _ []byte) []byte {
			b := make([]byte, 5000)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}},
		{"insertions", 300 << 10, func(r *rand.Rand, b []byte) []byte {
			for range 20 {
				at := r.IntN(len(b))
				ins := make([]byte, r.IntN(3000))
				for i := range ins {
					ins[i] = byte(r.Uint32())
				}
				b = append(b[:at:at], append(ins, b[at:]...)...)
			}
			return b
		}},
		{"deletions", 300 << 10, func(r *rand.Rand, b []byte) []byte {
			for range 20 {
				at := r.IntN(len(b) - 5000)
				b = append(b[:at:at], b[at+r.IntN(5000):]...)
			}
			return b
		}},
		{"random overwrites", 300 << 10, func(r *rand.Rand, b []byte) []byte {
			for range 200 {
				at := r.IntN(len(b) - 64)
				for i := range r.IntN(64) {
					b[at+i] = byte(r.Uint32())
				}
			}
			return b
		}},
		{"shifted addresses", 300 << 10, func(_ *rand.Rand, b []byte) []byte {
			for i := 0; i+4 <= len(b); i += 97 {
				b[i]++
			}
			return b
		}},
		{"long adds split in pieces", 1 << 20, func(_ *rand.Rand, b []byte) []byte {
			for i := 0; i < len(b); i += 3 {
				b[i] ^= 0x5a
			}
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			old, nw := synthetic(uint64(len(tt.name)), tt.size, tt.edit)
			for _, mode := range []int{0, modeStream, modeDict} {
				patch := mustEncode(t, old, nw, EncodeOptions{WindowSize: 64 << 10, mode: mode})
				h, err := ParseHeader(patch)
				if err != nil {
					t.Fatalf("mode %d: ParseHeader: %v", mode, err)
				}
				if mode != 0 && h.Dictionary != (mode == modeDict) {
					t.Errorf("mode %d: Header.Dictionary = %v", mode, h.Dictionary)
				}
				got, err := apply(t, old, patch)
				if err != nil {
					t.Fatalf("mode %d: Apply() error %v", mode, err)
				}
				if !bytes.Equal(got, nw) {
					t.Fatalf("mode %d: Apply() = %d bytes, want the %d-byte new image", mode, len(got), len(nw))
				}
				t.Logf("mode %d: old %d, new %d, patch %d (dictionary %v)", mode, len(old), len(nw), len(patch), h.Dictionary)
			}
		})
	}
}

func TestSmallChangeGivesSmallPatch(t *testing.T) {
	t.Parallel()
	old, nw := synthetic(7, 1<<20, func(r *rand.Rand, b []byte) []byte {
		for range 10 {
			b[r.IntN(len(b))]++
		}
		return b
	})
	if patch := mustEncode(t, old, nw, EncodeOptions{}); len(patch) > 2000 {
		t.Errorf("patch for 10 changed bytes of 1 MiB = %d bytes, want ≤ 2000", len(patch))
	}
}

func TestApplyRefuses(t *testing.T) {
	t.Parallel()
	for _, mode := range []int{modeStream, modeDict} {
		t.Run(fmt.Sprint("mode", mode), func(t *testing.T) {
			t.Parallel()
			testApplyRefuses(t, mode)
		})
	}
}

func testApplyRefuses(t *testing.T, mode int) {
	old, nw := synthetic(3, 100<<10, func(r *rand.Rand, b []byte) []byte {
		for range 50 {
			b[r.IntN(len(b))] = byte(r.Uint32())
		}
		return append(b, "new tail"...)
	})
	patch := mustEncode(t, old, nw, EncodeOptions{mode: mode})
	otherBase := bytes.Clone(old)
	otherBase[len(otherBase)/2] ^= 1

	tests := []struct {
		name  string
		old   []byte
		patch []byte
	}{
		{"wrong base", otherBase, patch},
		{"shorter base", old[:len(old)-1], patch},
		{"truncated header", old, patch[:headerSize-1]},
		{"header only", old, patch[:headerSize]},
		{"truncated body", old, patch[:len(patch)-10]},
		{"trailing bytes", old, append(bytes.Clone(patch), 0)},
		{"empty", old, nil},
	}
	for _, tt := range tests {
		out, err := apply(t, tt.old, tt.patch)
		if !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("%s: Apply() error %v, want rampart.ErrInvalid", tt.name, err)
		}
		if len(out) > len(nw) {
			t.Errorf("%s: Apply() wrote %d bytes, more than the declared %d", tt.name, len(out), len(nw))
		}
	}
	// A corrupted byte anywhere is refused, unless it changes nothing that matters (say, a
	// larger zstd window) and the output is still the new image.
	for i := range len(patch) {
		p := bytes.Clone(patch)
		p[i] ^= 0x20
		out, err := apply(t, old, p)
		if err == nil && !bytes.Equal(out, nw) {
			t.Errorf("Apply(patch with byte %d corrupted) = wrong image, no error", i)
		}
		if err != nil && !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("Apply(patch with byte %d corrupted) error %v, want rampart.ErrInvalid", i, err)
		}
		if len(out) > len(nw) {
			t.Errorf("Apply(patch with byte %d corrupted) wrote %d bytes, more than the declared %d", i, len(out), len(nw))
		}
	}
}

func TestApplyPatchReadErrorIsNotInvalid(t *testing.T) {
	t.Parallel()
	old, nw := synthetic(5, 64<<10, func(_ *rand.Rand, b []byte) []byte { return append(b, 1, 2, 3) })
	patch := mustEncode(t, old, nw, EncodeOptions{})
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(patch[:len(patch)/2]), &failReader{boom})
	err := Apply(t.Context(), bytes.NewReader(old), int64(len(old)), r, io.Discard)
	if !errors.Is(err, boom) || errors.Is(err, rampart.ErrInvalid) {
		t.Errorf("Apply(failing reader) error %v, want %v and not rampart.ErrInvalid", err, boom)
	}
}

type failReader struct{ err error }

func (f *failReader) Read([]byte) (int, error) { return 0, f.err }

// TestDictionaryMode checks when Encode writes dictionary patches and that Apply refuses one
// whose base image is over MaxDictMemory.
func TestDictionaryMode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		old  int64
		body int
		want int
		ok   bool
	}{{0, 0, MinWindowSize, true}, {1000, 100, 2048, true}, {3 << 20, 1 << 20, 4 << 20, true}, {16 << 20, 1 << 20, 32 << 20, true}, {17 << 20, 0, 0, false}, {24 << 20, 1 << 20, 0, false}, {MaxDictMemory, 0, 0, false}} {
		w, ok := dictWindow(tt.old, tt.body)
		if ok != tt.ok || (ok && w != tt.want) {
			t.Errorf("dictWindow(%d, %d) = %d, %v, want %d, %v", tt.old, tt.body, w, ok, tt.want, tt.ok)
		}
	}
	// Relocated blocks: literal bytes found in the old image make the dictionary patch smaller.
	old, nw := synthetic(11, 200<<10, func(r *rand.Rand, b []byte) []byte {
		out := make([]byte, 0, len(b))
		for range 400 {
			at := r.IntN(len(b) - 64)
			out = append(out, b[at:at+r.IntN(64)]...)
		}
		return out
	})
	if h, _ := ParseHeader(mustEncode(t, old, nw, EncodeOptions{})); !h.Dictionary {
		t.Errorf("Encode(relocated pieces) did not choose the dictionary patch")
	}
	if h, _ := ParseHeader(mustEncode(t, old, nw, EncodeOptions{Streaming: true})); h.Dictionary {
		t.Errorf("Encode(Streaming: true) wrote a dictionary patch")
	}
	big := Header{OldSize: MaxDictMemory, NewSize: 1, Dictionary: true}
	err := Apply(t.Context(), bytes.NewReader(nil), MaxDictMemory, bytes.NewReader(big.marshal()), io.Discard)
	if !errors.Is(err, rampart.ErrTooLarge) || !errors.Is(err, rampart.ErrInvalid) {
		t.Errorf("Apply(dictionary patch for a %d-byte base) error %v, want ErrInvalid and ErrTooLarge", int64(MaxDictMemory), err)
	}
}

func TestEncodeOptions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in, want int
		ok       bool
	}{{0, DefaultWindowSize, true}, {1, MinWindowSize, true}, {3 << 20, 4 << 20, true}, {MaxWindowSize, MaxWindowSize, true}, {MaxWindowSize + 1, 0, false}, {-1, 0, false}} {
		got, err := EncodeOptions{WindowSize: tt.in}.window()
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("EncodeOptions{WindowSize: %d}.window() = %d, %v, want %d (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestWriteFuzzSeeds regenerates testdata/fuzz seeds with -update-seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("DELTA_UPDATE_SEEDS") == "" {
		t.Skip("set DELTA_UPDATE_SEEDS=1 to rewrite testdata/")
	}
	for i, size := range []int{0, 100, 3000, 20000, 0, 100, 3000, 20000} {
		old, nw := seedPair(uint64(i%4), size)
		mode := modeStream
		if i >= 4 {
			mode = modeDict
		}
		p := mustEncode(t, old, nw, EncodeOptions{WindowSize: MinWindowSize, mode: mode})
		name := filepath.Join("testdata", "seed"+string(rune('0'+i))+".patch")
		if err := os.WriteFile(name, p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
