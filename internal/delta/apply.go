package delta

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"

	"github.com/klauspost/compress/zstd"
	"github.com/rampart-iot/rampart"
)

// chunk is the unit in which Apply reads the old image and the patch and writes the output.
const chunk = 32 << 10

// Apply rebuilds the new image from the oldSize bytes of old and the patch, writing it to out.
// It first hashes old and refuses a patch made for another base image. It then streams: it
// never writes more than the size the header declares, and it checks the size and SHA-256 of
// what it wrote at the end. The patch must end where its body ends.
//
// Errors caused by the patch or the old image wrap rampart.ErrInvalid; an error from out, from
// reading old, or from ctx is returned wrapped as is. On error, out may hold a partial image.
func Apply(ctx context.Context, old io.ReaderAt, oldSize int64, patch io.Reader, out io.Writer) error {
	var hb [headerSize]byte
	if _, err := io.ReadFull(patch, hb[:]); err != nil {
		return fmt.Errorf("delta apply: read header: %w", invalidIfEOF(err))
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return fmt.Errorf("delta apply: %w", err)
	}
	zopts := []zstd.DOption{
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(MaxWindowSize),
	}
	if h.Dictionary {
		// The decoder refers to the old image directly: hold it, and limit the window so
		// that both fit MaxDictMemory.
		if h.OldSize > MaxDictMemory-MinWindowSize {
			return fmt.Errorf("delta apply: dictionary patch for a %d-byte base image, limit %d: %w", h.OldSize, MaxDictMemory-MinWindowSize, errors.Join(rampart.ErrInvalid, rampart.ErrTooLarge))
		}
		if oldSize != h.OldSize {
			return fmt.Errorf("delta apply: %w", checkBase(ctx, old, oldSize, h))
		}
		buf := make([]byte, oldSize)
		if _, err := old.ReadAt(buf, 0); err != nil && !(errors.Is(err, io.EOF) && oldSize == 0) {
			return fmt.Errorf("delta apply: read base image: %w", err)
		}
		old = bytes.NewReader(buf)
		zopts = append(zopts,
			zstd.WithDecoderMaxWindow(uint64(min(MaxWindowSize, MaxDictMemory-h.OldSize))),
			zstd.WithDecoderDictRaw(dictID, buf))
	}
	if err := checkBase(ctx, old, oldSize, h); err != nil {
		return fmt.Errorf("delta apply: %w", err)
	}
	src := &srcReader{r: patch}
	zr, err := zstd.NewReader(src, zopts...)
	if err != nil {
		return fmt.Errorf("delta apply: zstd: %w", err)
	}
	defer zr.Close()
	a := applier{
		ctx:  ctx,
		src:  src,
		old:  old,
		body: bufio.NewReaderSize(zr, chunk),
		out:  bufio.NewWriterSize(out, chunk),
		sum:  sha256.New(),
		h:    h,
		buf:  make([]byte, chunk),
		obuf: make([]byte, chunk),
	}
	if err := a.run(); err != nil {
		return fmt.Errorf("delta apply: %w", err)
	}
	return nil
}

// checkBase hashes the old image and compares it with the header.
func checkBase(ctx context.Context, old io.ReaderAt, oldSize int64, h Header) error {
	if oldSize != h.OldSize {
		return fmt.Errorf("patch is for a %d-byte base image, have %d bytes: %w", h.OldSize, oldSize, rampart.ErrInvalid)
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, &ctxReader{ctx: ctx, r: io.NewSectionReader(old, 0, oldSize)}); err != nil {
		return fmt.Errorf("hash base image: %w", err)
	}
	if [32]byte(sum.Sum(nil)) != h.OldSHA256 {
		return fmt.Errorf("patch is for another base image (SHA-256 %x): %w", h.OldSHA256[:8], rampart.ErrInvalid)
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// srcReader remembers the first error of the patch reader, so that a failing download is not
// reported as a bad patch.
type srcReader struct {
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

type applier struct {
	ctx       context.Context
	src       *srcReader
	old       io.ReaderAt
	body      *bufio.Reader
	out       *bufio.Writer
	sum       hash.Hash
	h         Header
	buf, obuf []byte
	diffs     []byte
	recs      []record
	oldPos    int64
	newPos    int64
}

func (a *applier) run() error {
	first := true
	for a.newPos < a.h.NewSize {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		if err := a.block(&first); err != nil {
			return err
		}
	}
	if _, err := a.body.ReadByte(); !errors.Is(err, io.EOF) {
		if err == nil {
			return fmt.Errorf("data after the last block: %w", rampart.ErrInvalid)
		}
		return fmt.Errorf("end of body: %w", a.bodyErr(err))
	}
	if err := a.out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if [32]byte(a.sum.Sum(nil)) != a.h.NewSHA256 {
		return fmt.Errorf("rebuilt image does not match the SHA-256 in the patch: %w", rampart.ErrInvalid)
	}
	return nil
}

// block reads one block's records and differences, checks the records against the declared
// sizes, then writes their output.
func (a *applier) block(first *bool) error {
	n, err := a.uvarint()
	if err != nil {
		return err
	}
	if n == 0 || n > maxBlockRecords {
		return fmt.Errorf("block of %d records: %w", n, rampart.ErrInvalid)
	}
	oldPos, newPos := a.oldPos, a.newPos
	a.recs = slices.Grow(a.recs[:0], int(n))[:n]
	for i := range a.recs {
		if a.recs[i].add, err = a.uvarint(); err != nil {
			return err
		}
	}
	for i := range a.recs {
		if a.recs[i].copy, err = a.uvarint(); err != nil {
			return err
		}
	}
	for i := range a.recs {
		if a.recs[i].seek, err = binary.ReadVarint(a.body); err != nil {
			return fmt.Errorf("read record: %w", a.bodyErr(err))
		}
	}
	for _, r := range a.recs {
		left := uint64(a.h.NewSize - newPos)
		switch {
		case r.add > left || r.copy > left-r.add:
			return fmt.Errorf("record writes past the declared new size %d: %w", a.h.NewSize, rampart.ErrInvalid)
		case r.add == 0 && r.copy == 0 && !*first:
			return fmt.Errorf("empty record at output offset %d: %w", newPos, rampart.ErrInvalid)
		case int64(r.add) > a.h.OldSize-oldPos:
			return fmt.Errorf("record reads past the end of the base image: %w", rampart.ErrInvalid)
		}
		oldPos += int64(r.add)
		if r.seek < -oldPos || r.seek > a.h.OldSize-oldPos {
			return fmt.Errorf("record seeks outside the base image: %w", rampart.ErrInvalid)
		}
		oldPos += r.seek
		newPos += int64(r.add + r.copy)
		*first = false
	}
	a.diffs = a.diffs[:0]
	var rl uint64
	for i := range 2 {
		l, err := a.uvarint()
		if err != nil {
			return err
		}
		if l > MaxDiffSection-uint64(len(a.diffs)) {
			return fmt.Errorf("difference section over %d bytes: %w", MaxDiffSection, errors.Join(rampart.ErrInvalid, rampart.ErrTooLarge))
		}
		if i == 0 {
			rl = l
		}
		n := len(a.diffs)
		a.diffs = slices.Grow(a.diffs, int(l))[:n+int(l)]
		if _, err := io.ReadFull(a.body, a.diffs[n:]); err != nil {
			return fmt.Errorf("read differences: %w", a.bodyErr(err))
		}
	}
	d := sparse{runs: a.diffs[:rl], vals: a.diffs[rl:]}
	for _, r := range a.recs {
		if err := a.add(&d, int64(r.add)); err != nil {
			return err
		}
		if err := a.copy(int64(r.copy)); err != nil {
			return err
		}
		a.oldPos += r.seek
	}
	if len(d.runs) != 0 || len(d.vals) != 0 {
		return fmt.Errorf("%d unused difference bytes: %w", len(d.runs)+len(d.vals), rampart.ErrInvalid)
	}
	return nil
}

// sparse is what is left of a block's differences: zero runs and non-zero values.
type sparse struct {
	runs, vals []byte
}

func (a *applier) uvarint() (uint64, error) {
	v, err := binary.ReadUvarint(a.body)
	if err != nil {
		return 0, fmt.Errorf("read record: %w", a.bodyErr(err))
	}
	return v, nil
}

// add writes n bytes: the old bytes at oldPos plus the sparse differences consumed from d.
func (a *applier) add(d *sparse, n int64) error {
	run := int64(-1) // zeros left before the next non-zero difference; -1: read the next run
	for n > 0 {
		k := min(n, chunk)
		o := a.obuf[:k]
		if _, err := a.old.ReadAt(o, a.oldPos); err != nil {
			return fmt.Errorf("read base image at %d: %w", a.oldPos, err)
		}
		for i := int64(0); i < k; {
			if run < 0 {
				v, m := binary.Uvarint(d.runs)
				if m <= 0 || v > uint64(n-i) {
					return fmt.Errorf("bad difference run: %w", rampart.ErrInvalid)
				}
				run, d.runs = int64(v), d.runs[m:]
			}
			skip := min(run, k-i)
			i += skip
			run -= skip
			if run > 0 || i == k {
				continue
			}
			if len(d.vals) == 0 {
				return fmt.Errorf("differences truncated: %w", rampart.ErrInvalid)
			}
			if d.vals[0] == 0 {
				return fmt.Errorf("zero byte in differences: %w", rampart.ErrInvalid)
			}
			o[i] += d.vals[0]
			d.vals = d.vals[1:]
			i++
			run = -1
		}
		if err := a.write(o); err != nil {
			return err
		}
		a.oldPos += k
		n -= k
	}
	return nil
}

// copy writes the next n body bytes.
func (a *applier) copy(n int64) error {
	for n > 0 {
		d := a.buf[:min(n, chunk)]
		if _, err := io.ReadFull(a.body, d); err != nil {
			return fmt.Errorf("read literal bytes: %w", a.bodyErr(err))
		}
		if err := a.write(d); err != nil {
			return err
		}
		n -= int64(len(d))
	}
	return nil
}

func (a *applier) write(p []byte) error {
	a.sum.Write(p)
	a.newPos += int64(len(p))
	if _, err := a.out.Write(p); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// bodyErr marks an error from reading the patch body as the patch's fault (a truncated or
// corrupt zstd stream), unless the patch reader itself failed.
func (a *applier) bodyErr(err error) error {
	if a.src.err != nil {
		return fmt.Errorf("read patch: %w", a.src.err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("patch truncated: %w", rampart.ErrInvalid)
	}
	return errors.Join(err, rampart.ErrInvalid)
}

func invalidIfEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("patch truncated: %w", rampart.ErrInvalid)
	}
	return err
}
