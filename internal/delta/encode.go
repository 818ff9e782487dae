package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"index/suffixarray"
	"io"
	"math/bits"

	"github.com/klauspost/compress/zstd"
	"github.com/rampart-iot/rampart"
)

// EncodeOptions tunes Encode. The zero value is the recommended setting.
type EncodeOptions struct {
	// WindowSize is the zstd window of the patch body, rounded up to a power of two between
	// MinWindowSize and MaxWindowSize; zero means DefaultWindowSize. It is what Apply holds
	// in memory: a larger window finds repeats further back in the new bytes, for a slightly
	// smaller patch.
	WindowSize int
	// Streaming, when set, never writes a dictionary patch, so that Apply streams the old
	// image whatever its size. Otherwise Encode also tries a dictionary patch when the old
	// image fits MaxDictMemory (its window is then chosen to cover the old image and the
	// body, WindowSize does not apply) and keeps the smaller of the two.
	Streaming bool

	// mode forces one encoding, for tests: 0 keeps the smaller, modeStream or modeDict.
	mode int
}

const (
	modeStream = 1
	modeDict   = 2
)

func (o EncodeOptions) window() (int, error) {
	w := o.WindowSize
	switch {
	case w == 0:
		return DefaultWindowSize, nil
	case w < 0 || w > MaxWindowSize:
		return 0, fmt.Errorf("window size %d outside [0, %d]: %w", w, MaxWindowSize, rampart.ErrInvalid)
	case w < MinWindowSize:
		return MinWindowSize, nil
	}
	return 1 << bits.Len(uint(w-1)), nil
}

// Encode writes to patch a delta that rebuilds the image read from newR out of the oldSize
// bytes of old. It reads both images into memory. ctx is checked between matches.
func Encode(ctx context.Context, old io.ReaderAt, oldSize int64, newR io.Reader, patch io.Writer, opts EncodeOptions) error {
	window, err := opts.window()
	if err != nil {
		return fmt.Errorf("delta encode: %w", err)
	}
	if oldSize < 0 || oldSize > MaxImageSize {
		return fmt.Errorf("delta encode: old size %d outside [0, %d]: %w", oldSize, int64(MaxImageSize), rampart.ErrInvalid)
	}
	oldBuf := make([]byte, oldSize)
	if _, err := old.ReadAt(oldBuf, 0); err != nil && !(errors.Is(err, io.EOF) && oldSize == 0) {
		return fmt.Errorf("delta encode: read old image: %w", err)
	}
	newBuf, err := io.ReadAll(io.LimitReader(newR, MaxImageSize+1))
	if err != nil {
		return fmt.Errorf("delta encode: read new image: %w", err)
	}
	if len(newBuf) > MaxImageSize {
		return fmt.Errorf("delta encode: new image over %d bytes: %w", int64(MaxImageSize), rampart.ErrTooLarge)
	}
	h := Header{OldSize: oldSize, OldSHA256: sha256.Sum256(oldBuf), NewSize: int64(len(newBuf)), NewSHA256: sha256.Sum256(newBuf)}
	sa, err := suffixArray(oldBuf)
	if err != nil {
		return fmt.Errorf("delta encode: %w", err)
	}
	var raw bytes.Buffer
	if err := diff(ctx, oldBuf, newBuf, sa, &raw); err != nil {
		return fmt.Errorf("delta encode: %w", err)
	}
	var body []byte
	if opts.mode != modeDict {
		if body, err = compress(raw.Bytes(), window, nil); err != nil {
			return fmt.Errorf("delta encode: %w", err)
		}
	}
	if dw, ok := dictWindow(oldSize, raw.Len()); opts.mode == modeDict || (opts.mode == 0 && !opts.Streaming && ok) {
		if !ok {
			return fmt.Errorf("delta encode: old image too large for a dictionary patch: %w", rampart.ErrInvalid)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("delta encode: %w", err)
		}
		alt, err := compress(raw.Bytes(), dw, oldBuf)
		if err != nil {
			return fmt.Errorf("delta encode: %w", err)
		}
		if body == nil || len(alt) < len(body) {
			body, h.Dictionary = alt, true
		}
	}
	if _, err := patch.Write(h.marshal()); err != nil {
		return fmt.Errorf("delta encode: write header: %w", err)
	}
	if _, err := patch.Write(body); err != nil {
		return fmt.Errorf("delta encode: write body: %w", err)
	}
	return nil
}

// dictWindow returns the zstd window of a dictionary patch whose old image has oldSize bytes
// and whose uncompressed body has bodySize bytes: the power of two covering both, so that
// every byte of the old image stays reachable. ok is false when old size + window exceeds
// MaxDictMemory.
func dictWindow(oldSize int64, bodySize int) (window int, ok bool) {
	need := max(oldSize+int64(bodySize), MinWindowSize)
	if need > MaxDictMemory {
		return 0, false
	}
	window = 1 << bits.Len64(uint64(need-1))
	return window, oldSize+int64(window) <= MaxDictMemory
}

// compress returns raw as one zstd frame with the given window, using dict as raw
// dictionary (ID dictID) when it is not nil.
func compress(raw []byte, window int, dict []byte) ([]byte, error) {
	opts := []zstd.EOption{
		zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(window),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true),
	}
	if dict != nil {
		opts = append(opts, zstd.WithEncoderDictRaw(dictID, dict))
	}
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out, opts...)
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return out.Bytes(), nil
}

// suffixArray returns the suffix array of data. index/suffixarray builds it in linear time
// (SA-IS) but does not export it, so it is recovered from the documented serialisation of
// Index.Write: a 10-byte varint length, the data, then chunks each starting with a 10-byte
// varint chunk length followed by uvarint suffix offsets.
func suffixArray(data []byte) ([]int32, error) {
	sa := make([]int32, 0, len(data))
	p := &saParser{n: len(data), sa: sa}
	if err := suffixarray.New(data).Write(p); err != nil {
		return nil, fmt.Errorf("suffix array: %w", err)
	}
	if len(p.sa) != len(data) {
		return nil, fmt.Errorf("suffix array: got %d entries, want %d", len(p.sa), len(data))
	}
	return p.sa, nil
}

// saParser receives the stream of Index.Write. It relies on Write issuing one call for the
// length, one for the data and one per chunk, and checks what it can.
type saParser struct {
	n     int
	calls int
	sa    []int32
}

var errSAFormat = errors.New("unexpected index/suffixarray serialisation")

func (p *saParser) Write(b []byte) (int, error) {
	p.calls++
	switch p.calls {
	case 1:
		if n, k := binary.Varint(b); k <= 0 || int(n) != p.n || len(b) != binary.MaxVarintLen64 {
			return 0, errSAFormat
		}
	case 2:
		if len(b) != p.n {
			return 0, errSAFormat
		}
	default:
		size, k := binary.Varint(b)
		if k <= 0 || int(size) != len(b) || len(b) < binary.MaxVarintLen64 {
			return 0, errSAFormat
		}
		for rest := b[binary.MaxVarintLen64:]; len(rest) > 0; {
			v, k := binary.Uvarint(rest)
			if k <= 0 || v >= uint64(p.n) {
				return 0, errSAFormat
			}
			p.sa = append(p.sa, int32(v))
			rest = rest[k:]
		}
	}
	return len(b), nil
}

// matchLen returns the length of the common prefix of a and b.
func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i+8 <= n {
		x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:])
		if x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
		i += 8
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// search returns the position in old and the length of the longest match of target among
// the suffixes sa[st:en+1], by binary search as bsdiff does.
func search(sa []int32, old, target []byte, st, en int) (pos, n int) {
	for en-st >= 2 {
		x := st + (en-st)/2
		if bytes.Compare(old[sa[x]:], target) < 0 {
			st = x
		} else {
			en = x
		}
	}
	a := matchLen(old[sa[st]:], target)
	b := matchLen(old[sa[en]:], target)
	if a > b {
		return int(sa[st]), a
	}
	return int(sa[en]), b
}

// maxCompare bounds how many bytes the binary search compares per probe: the longest match
// only needs to be located, and long runs (zero padding in a tar) would otherwise make the
// search quadratic.
const maxCompare = 1 << 12

// matchBonus is how many more bytes a new match must cover than continuing the previous
// alignment does before a new record starts (bsdiff's constant; 4, 6, 12 and 16 gave larger
// patches on the benchmark pairs).
const matchBonus = 8

// diff writes the records turning old into nw (the bsdiff 4 algorithm, with an exact-match
// finder over the suffix array and records written to one stream).
func diff(ctx context.Context, old, nw []byte, sa []int32, w *bytes.Buffer) error {
	rw := recordWriter{w: w}
	oldSize, newSize := len(old), len(nw)
	var scan, n, pos, lastScan, lastPos, lastOffset int
	lookup := func(scan int) (int, int) {
		if oldSize == 0 {
			return 0, 0
		}
		t := nw[scan:min(newSize, scan+maxCompare)]
		p, l := search(sa, old, t, 0, oldSize-1)
		if l == len(t) { // extend beyond the probe window
			l += matchLen(old[p+l:], nw[scan+l:])
		}
		return p, l
	}
	for steps := 0; scan < newSize; {
		oldScore := 0
		scan += n
		scsc := scan
		for ; scan < newSize; scan++ {
			if steps++; steps&0xffff == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			pos, n = lookup(scan)
			for ; scsc < scan+n; scsc++ {
				if scsc+lastOffset < oldSize && scsc+lastOffset >= 0 && old[scsc+lastOffset] == nw[scsc] {
					oldScore++
				}
			}
			if (n == oldScore && n != 0) || n > oldScore+matchBonus {
				break
			}
			if scan+lastOffset < oldSize && scan+lastOffset >= 0 && old[scan+lastOffset] == nw[scan] {
				oldScore--
			}
		}
		if n == oldScore && scan != newSize {
			continue
		}
		// Extend the previous match forwards and this one backwards.
		s, sf, lenf := 0, 0, 0
		for i := 0; lastScan+i < scan && lastPos+i < oldSize; {
			if old[lastPos+i] == nw[lastScan+i] {
				s++
			}
			i++
			if s*2-i > sf*2-lenf {
				sf, lenf = s, i
			}
		}
		lenb := 0
		if scan < newSize {
			s, sb := 0, 0
			for i := 1; scan >= lastScan+i && pos >= i; i++ {
				if old[pos-i] == nw[scan-i] {
					s++
				}
				if s*2-i > sb*2-lenb {
					sb, lenb = s, i
				}
			}
		}
		if lastScan+lenf > scan-lenb {
			overlap := lastScan + lenf - (scan - lenb)
			s, ss, lens := 0, 0, 0
			for i := 0; i < overlap; i++ {
				if nw[lastScan+lenf-overlap+i] == old[lastPos+lenf-overlap+i] {
					s++
				}
				if nw[scan-lenb+i] == old[pos-lenb+i] {
					s--
				}
				if s > ss {
					ss, lens = s, i+1
				}
			}
			lenf += lens - overlap
			lenb -= lens
		}
		extra := nw[lastScan+lenf : scan-lenb]
		if err := rw.write(old[lastPos:lastPos+lenf], nw[lastScan:lastScan+lenf], extra, int64(pos-lenb)-int64(lastPos+lenf)); err != nil {
			return err
		}
		lastScan, lastPos, lastOffset = scan-lenb, pos-lenb, pos-scan
	}
	return rw.flush()
}

// recordWriter collects records into blocks, folding a record that neither adds nor copies
// into the seek of the one before, so that every record but the first makes progress.
type recordWriter struct {
	w       *bytes.Buffer
	started bool
	recs    []record
	runs    []byte // zero runs of the differences
	vals    []byte // non-zero differences
	extra   []byte
	tmp     [3 * binary.MaxVarintLen64]byte
}

type record struct {
	add, copy uint64
	seek      int64
}

func (r *recordWriter) write(oldPart, newPart, extra []byte, seek int64) error {
	if len(newPart) == 0 && len(extra) == 0 && r.started {
		r.recs[len(r.recs)-1].seek += seek
		return nil
	}
	r.started = true
	for {
		piece := min(len(newPart), maxAddPiece)
		if len(r.recs) == maxBlockRecords || len(r.runs)+len(r.vals)+2*piece+binary.MaxVarintLen64 > MaxDiffSection {
			if err := r.flush(); err != nil {
				return err
			}
		}
		last := piece == len(newPart)
		rec := record{add: uint64(piece)}
		r.runs, r.vals = appendSparse(r.runs, r.vals, oldPart[:piece], newPart[:piece])
		if last {
			rec.copy, rec.seek = uint64(len(extra)), seek
			r.extra = append(r.extra, extra...)
		}
		r.recs = append(r.recs, rec)
		if last {
			return nil
		}
		oldPart, newPart = oldPart[piece:], newPart[piece:]
	}
}

// appendSparse appends the differences nw-old: zero runs to runs and the non-zero byte after
// each run to vals.
func appendSparse(runs, vals, old, nw []byte) ([]byte, []byte) {
	run := 0
	for i := range nw {
		d := nw[i] - old[i]
		if d == 0 {
			run++
			continue
		}
		runs = binary.AppendUvarint(runs, uint64(run))
		vals = append(vals, d)
		run = 0
	}
	if run > 0 {
		runs = binary.AppendUvarint(runs, uint64(run))
	}
	return runs, vals
}

// flush writes the collected records as one block.
func (r *recordWriter) flush() error {
	if len(r.recs) == 0 {
		return nil
	}
	b := binary.AppendUvarint(r.tmp[:0], uint64(len(r.recs)))
	if _, err := r.w.Write(b); err != nil {
		return err
	}
	for col := range 3 {
		for _, rec := range r.recs {
			var b []byte
			switch col {
			case 0:
				b = binary.AppendUvarint(r.tmp[:0], rec.add)
			case 1:
				b = binary.AppendUvarint(r.tmp[:0], rec.copy)
			default:
				b = binary.AppendVarint(r.tmp[:0], rec.seek)
			}
			if _, err := r.w.Write(b); err != nil {
				return err
			}
		}
	}
	for _, sec := range [][]byte{r.runs, r.vals} {
		if _, err := r.w.Write(binary.AppendUvarint(r.tmp[:0], uint64(len(sec)))); err != nil {
			return err
		}
		if _, err := r.w.Write(sec); err != nil {
			return err
		}
	}
	if _, err := r.w.Write(r.extra); err != nil {
		return err
	}
	r.recs, r.runs, r.vals, r.extra = r.recs[:0], r.runs[:0], r.vals[:0], r.extra[:0]
	return nil
}
