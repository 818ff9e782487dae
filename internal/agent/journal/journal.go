// Package journal is the agent's append-only step journal: every step of an update is written
// and fsynced here before it is taken, so that after a power loss the agent knows exactly how
// far it got and can continue or roll back.
//
// It is for the installers in internal/agent/installer. It is not a general log or a database:
// records are small (at most [MaxRecord] bytes), there is one writer, and the whole journal is
// read into memory on Open.
//
// The file starts with the 8-byte magic "RMPJRN1\n". Each record follows as
//
//	length  uint32, little endian: the payload length, 1..MaxRecord
//	crc     uint32, little endian: CRC-32C (Castagnoli) of the payload
//	payload JSON {"step":..., "deployment":..., "data":{...}}
//
// Replay stops at the first record that is short, oversized, fails its CRC or does not decode:
// that is a record torn by a power loss, and Open truncates it away before the next Append.
package journal

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/rampart-iot/rampart"
)

// Magic starts every journal file.
const Magic = "RMPJRN1\n"

// MaxRecord bounds a record's payload.
const MaxRecord = 64 << 10

const headerLen = 8 // length + crc

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Entry is one journaled step.
type Entry struct {
	// Step names the step, such as "begin" or "committed"; never empty.
	Step string `json:"step"`
	// Deployment is the update this step belongs to.
	Deployment string `json:"deployment,omitempty"`
	// Data holds what the step needs to be resumed (paths, slots, digests).
	Data map[string]string `json:"data,omitempty"`
}

// Journal is an open journal file. Its methods are safe for concurrent use.
type Journal struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	size    int64 // end of the last whole record
	entries []Entry
}

// Open opens the journal at path, creating it if needed, and replays it. A torn last record
// is dropped from the file. A file that is not a journal is refused with rampart.ErrInvalid.
func Open(path string) (*Journal, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if len(b) < len(Magic) && string(b) == Magic[:len(b)] {
		// New, or torn while it was being created.
		if err := writeAtomic(path, []byte(Magic)); err != nil {
			return nil, fmt.Errorf("create journal: %w", err)
		}
		b = []byte(Magic)
	}
	entries, n, err := Replay(b)
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if n < len(b) {
		if err := f.Truncate(int64(n)); err != nil {
			f.Close()
			return nil, fmt.Errorf("drop torn journal record: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("drop torn journal record: %w", err)
		}
	}
	return &Journal{path: path, f: f, size: int64(n), entries: entries}, nil
}

// Close closes the file. Entries stay readable.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}

// Append writes e and fsyncs it before returning: once Append returns nil, the step survives
// a power loss.
func (j *Journal) Append(ctx context.Context, e Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rec, err := Encode(e)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.WriteAt(rec, j.size); err != nil {
		j.f.Truncate(j.size) // best effort: a torn tail is ignored by Replay anyway
		return fmt.Errorf("journal %s: %w", e.Step, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal %s: %w", e.Step, err)
	}
	j.size += int64(len(rec))
	j.entries = append(j.entries, clone(e))
	return nil
}

// Last returns the last entry, if any.
func (j *Journal) Last() (Entry, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.entries) == 0 {
		return Entry{}, false
	}
	return clone(j.entries[len(j.entries)-1]), true
}

// Entries returns a copy of all entries, oldest first.
func (j *Journal) Entries() []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Entry, len(j.entries))
	for i, e := range j.entries {
		out[i] = clone(e)
	}
	return out
}

// Reset empties the journal once an update has ended. The previous journal is kept as
// path+".prev" for diagnosis; the swap is atomic, so a power loss leaves either journal whole.
func (j *Journal) Reset(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	old, err := os.ReadFile(j.path)
	if err != nil {
		return fmt.Errorf("reset journal: %w", err)
	}
	if err := writeAtomic(j.path+".prev", old); err != nil {
		return fmt.Errorf("reset journal: keep previous: %w", err)
	}
	if err := writeAtomic(j.path, []byte(Magic)); err != nil {
		return fmt.Errorf("reset journal: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("reset journal: %w", err)
	}
	j.f.Close()
	j.f, j.size, j.entries = f, int64(len(Magic)), nil
	return nil
}

// Encode returns e as one journal record.
func Encode(e Entry) ([]byte, error) {
	if e.Step == "" {
		return nil, fmt.Errorf("journal entry without a step: %w", rampart.ErrInvalid)
	}
	payload, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", e.Step, err)
	}
	if len(payload) > MaxRecord {
		return nil, fmt.Errorf("journal %s: %d bytes: %w", e.Step, len(payload), rampart.ErrTooLarge)
	}
	rec := binary.LittleEndian.AppendUint32(make([]byte, 0, headerLen+len(payload)), uint32(len(payload)))
	rec = binary.LittleEndian.AppendUint32(rec, crc32.Checksum(payload, castagnoli))
	return append(rec, payload...), nil
}

// Replay decodes a journal file: the entries of its whole, CRC-valid records up to the first
// torn or corrupt one, and n, the length of that valid prefix (magic included). Only a missing
// or wrong magic is an error (rampart.ErrInvalid).
func Replay(b []byte) (entries []Entry, n int, err error) {
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return nil, 0, fmt.Errorf("not a journal: %w", rampart.ErrInvalid)
	}
	n = len(Magic)
	for {
		rest := b[n:]
		if len(rest) < headerLen {
			return entries, n, nil
		}
		size := binary.LittleEndian.Uint32(rest)
		if size == 0 || size > MaxRecord || uint64(len(rest)-headerLen) < uint64(size) {
			return entries, n, nil
		}
		payload := rest[headerLen : headerLen+int(size)]
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(rest[4:]) {
			return entries, n, nil
		}
		var e Entry
		if json.Unmarshal(payload, &e) != nil || e.Step == "" {
			return entries, n, nil
		}
		entries = append(entries, e)
		n += headerLen + int(size)
	}
}

func clone(e Entry) Entry {
	if e.Data != nil {
		d := make(map[string]string, len(e.Data))
		for k, v := range e.Data {
			d[k] = v
		}
		e.Data = d
	}
	return e
}

// writeAtomic replaces path with b: temp file, fsync, rename, directory fsync.
func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
