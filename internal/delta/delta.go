// Package delta computes and applies binary delta patches between two firmware or root
// filesystem images, so that a device holding version A downloads only what changed in B.
//
// Encode runs on the server. It finds, with a suffix array of the old image, long approximate
// matches between the new and the old image (the bsdiff method) and writes their byte-wise
// differences, which are mostly zero, plus the bytes that match nothing, as one zstd stream.
// When the old image is small enough (see MaxDictMemory), Encode also compresses that stream
// with the old image as a raw zstd dictionary, so that literal bytes can refer to old bytes
// that moved, and keeps whichever patch is smaller; the header's Dictionary flag says which.
// Encode holds both images and a suffix array in memory: its peak RSS was 300 MiB for the
// 24 MB rootfs pair (about 12× the old image).
//
// Apply runs on the device. It streams: it reads the old image through an io.ReaderAt, the
// patch through an io.Reader and writes the new image to an io.Writer, never holding either
// image or the whole patch in memory. Its heap is bounded by the zstd window of the patch
// body, which Encode sets from EncodeOptions.WindowSize (default 8 MiB) and Apply refuses above
// MaxWindowSize (32 MiB), plus one block (at most MaxDiffSection = 1 MiB of differences and
// 16384 records of 24 bytes) and a few 32 KiB buffers:
//
//	apply heap ≤ WindowSize + 1.5 MiB ≤ MaxWindowSize + 1.5 MiB = 33.5 MiB, whatever the image sizes.
//
// A dictionary patch (Header.Dictionary) is the exception: Apply then reads the old image into
// memory, since the zstd decoder refers to it directly, and its window must cover the old image
// and the body. Encode writes one only if old size + window ≤ MaxDictMemory (48 MiB), and Apply
// refuses one above that, so
//
//	dictionary apply heap ≤ old size + window + 1.5 MiB ≤ MaxDictMemory + 1.5 MiB = 49.5 MiB.
//
// EncodeOptions.Streaming turns dictionary patches off for devices that cannot afford that.
//
// On linux/amd64 the measured peak RSS of a whole process applying the 24 MB rootfs pair with
// the default window is in bench/RESULTS.md.
//
// A patch names its base: the header carries the size and SHA-256 of the old and of the new
// image. Apply refuses a patch whose old image does not match, refuses to write more than the
// declared new size, and checks the SHA-256 of what it wrote. The caller still verifies the
// TUF target digest of the rebuilt image, as for a full download.
//
// The package does not diff compressed images usefully (a squashfs with xz blocks changes
// everywhere), is not executable-aware (no address normalisation as in Courgette), and is not
// for microcontrollers: it needs an io.ReaderAt over the old image and a few MiB of RAM.
package delta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/rampart-iot/rampart"
)

// Limits on what Encode produces and Apply accepts.
const (
	// MaxImageSize is the largest old or new image, in bytes (the suffix array uses int32).
	MaxImageSize = 1<<31 - 1
	// DefaultWindowSize is the zstd window used when EncodeOptions.WindowSize is zero.
	DefaultWindowSize = 8 << 20
	// MinWindowSize is the smallest zstd window Encode accepts.
	MinWindowSize = 1 << 10
	// MaxWindowSize is the largest zstd window Encode writes and Apply accepts; it bounds
	// the memory of Apply.
	MaxWindowSize = 32 << 20
	// MaxDictMemory bounds old size + zstd window of a dictionary patch, which is what
	// Apply holds in memory for one.
	MaxDictMemory = 48 << 20
)

// dictID is the zstd dictionary ID of the old image in a dictionary patch.
const dictID = 1

// flagDictionary marks a patch body compressed with the old image as raw zstd dictionary.
const flagDictionary = 1

// FormatVersion is the version of the patch format written by Encode.
// Version 2 splits each block's differences into zero runs and values and adds the
// dictionary flag; Apply reads only this version.
const FormatVersion = 2

// magic starts every patch.
var magic = [8]byte{'R', 'M', 'P', 'D', 'E', 'L', 'T', 'A'}

// headerSize is the length of the fixed header: magic, version, flags, old size, old
// SHA-256, new size, new SHA-256, CRC-32C of the preceding bytes.
const headerSize = 8 + 1 + 1 + 8 + 32 + 8 + 32 + 4

// Header is the self-describing start of a patch.
type Header struct {
	OldSize   int64
	OldSHA256 [32]byte
	NewSize   int64
	NewSHA256 [32]byte
	// Dictionary is set when the body is compressed with the old image as raw zstd
	// dictionary; Apply then holds the old image in memory.
	Dictionary bool
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (h *Header) marshal() []byte {
	b := make([]byte, 0, headerSize)
	b = append(b, magic[:]...)
	var flags byte
	if h.Dictionary {
		flags |= flagDictionary
	}
	b = append(b, FormatVersion, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(h.OldSize))
	b = append(b, h.OldSHA256[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.NewSize))
	b = append(b, h.NewSHA256[:]...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// ParseHeader decodes the fixed header at the start of a patch. Errors wrap rampart.ErrInvalid.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < headerSize {
		return h, fmt.Errorf("delta header: %d bytes, want %d: %w", len(b), headerSize, rampart.ErrInvalid)
	}
	b = b[:headerSize]
	if [8]byte(b[:8]) != magic {
		return h, fmt.Errorf("delta header: not a rampart delta patch: %w", rampart.ErrInvalid)
	}
	if b[8] != FormatVersion {
		return h, fmt.Errorf("delta header: format version %d, want %d: %w", b[8], FormatVersion, rampart.ErrInvalid)
	}
	if got, want := crc32.Checksum(b[:headerSize-4], castagnoli), binary.BigEndian.Uint32(b[headerSize-4:]); got != want {
		return h, fmt.Errorf("delta header: checksum mismatch: %w", rampart.ErrInvalid)
	}
	if b[9]&^flagDictionary != 0 {
		return h, fmt.Errorf("delta header: unknown flags %#x: %w", b[9], rampart.ErrInvalid)
	}
	old, nw := binary.BigEndian.Uint64(b[10:]), binary.BigEndian.Uint64(b[50:])
	if old > MaxImageSize || nw > MaxImageSize {
		return h, fmt.Errorf("delta header: image size over %d: %w", int64(MaxImageSize), errors.Join(rampart.ErrInvalid, rampart.ErrTooLarge))
	}
	h.OldSize, h.NewSize = int64(old), int64(nw)
	h.Dictionary = b[9]&flagDictionary != 0
	copy(h.OldSHA256[:], b[18:50])
	copy(h.NewSHA256[:], b[58:90])
	return h, nil
}

// The patch body follows the header as one zstd frame holding a sequence of blocks; the body
// ends right after the block that completes the new image. A block is
//
//	uvarint(n)                                  1 ≤ n ≤ maxBlockRecords
//	n × uvarint(add), n × uvarint(copy), n × varint(seek)
//	uvarint(r) and r bytes of zero runs         r + v ≤ MaxDiffSection
//	uvarint(v) and v non-zero difference values
//	the copy bytes of every record, in order
//
// Record i writes add bytes: the old image at the current old position plus (mod 256) the next
// add differences, then copy bytes verbatim, then moves the old position by seek. Differences
// are mostly zero and are stored sparsely: uvarint(zero run) in the runs, then one non-zero
// byte in the values, the byte omitted when the run reaches the end of the record's add. Every
// record but the first of the patch adds or copies at least one byte. Grouping each kind of
// data compresses better than interleaving them (splitting runs from values cut the patches of
// the benchmark pairs by 1-6 %), and Apply buffers only one block's records and differences.
const (
	// MaxDiffSection is the largest difference section of a block; Apply holds one in memory.
	MaxDiffSection = 1 << 20
	// maxBlockRecords is the largest number of records in a block.
	maxBlockRecords = 1 << 14
	// maxAddPiece is the largest add of one record written by Encode, so that one record's
	// differences (at most 2 bytes per byte) always fit a difference section.
	maxAddPiece = 256 << 10
)
