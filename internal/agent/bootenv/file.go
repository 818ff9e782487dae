package bootenv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// File is an [Env] kept in two redundant copies, Path and Path+".redund", the way U-Boot keeps a
// redundant environment: each copy carries a generation number and a CRC, a write goes to the
// older copy (temp file, fsync, rename, directory fsync), and a read takes the newest valid copy.
// A power loss during a write therefore leaves the previous environment readable.
//
// The zero value is not usable; set Path. A File is safe for concurrent use in one process.
type File struct {
	// Path is the primary copy; the second copy is Path+".redund".
	Path string

	mu sync.Mutex
}

// fileMagic starts every copy.
const fileMagic = "RMPENV1\n"

// Get implements [Env].
func (f *File) Get(ctx context.Context, keys ...string) (map[string]string, error) {
	if err := checkKeys(keys); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	vars, _, _, err := f.load()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if v, ok := vars[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

// Set implements [Env].
func (f *File) Set(ctx context.Context, vars map[string]string) error {
	if err := checkVars(vars); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, gen, newest, err := f.load()
	if err != nil {
		return err
	}
	for k, v := range vars {
		if v == "" {
			delete(cur, k)
		} else {
			cur[k] = v
		}
	}
	target := f.Path // write the copy that is not the newest
	if newest == 0 {
		target = f.Path + ".redund"
	}
	if err := writeAtomic(target, encodeCopy(gen+1, cur)); err != nil {
		return fmt.Errorf("set boot environment: %w", err)
	}
	return nil
}

// load returns the newest valid copy, its generation and which copy it was (0 primary,
// 1 redundant, -1 none). No valid copy is an empty environment.
func (f *File) load() (map[string]string, uint64, int, error) {
	best, bestGen, which := map[string]string{}, uint64(0), -1
	for i, p := range []string{f.Path, f.Path + ".redund"} {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, 0, 0, fmt.Errorf("read boot environment: %w", err)
		}
		vars, gen, ok := decodeCopy(b)
		if ok && (which < 0 || gen > bestGen) {
			best, bestGen, which = vars, gen, i
		}
	}
	return best, bestGen, which, nil
}

// encodeCopy lays out one copy: magic, generation (8 bytes LE), CRC-32 (IEEE, 4 bytes LE) of
// the body, then the body of sorted "key=value\n" lines.
func encodeCopy(gen uint64, vars map[string]string) []byte {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var body bytes.Buffer
	for _, k := range keys {
		body.WriteString(k + "=" + vars[k] + "\n")
	}
	b := []byte(fileMagic)
	b = binary.LittleEndian.AppendUint64(b, gen)
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(body.Bytes()))
	return append(b, body.Bytes()...)
}

func decodeCopy(b []byte) (map[string]string, uint64, bool) {
	if len(b) < len(fileMagic)+12 || string(b[:len(fileMagic)]) != fileMagic {
		return nil, 0, false
	}
	b = b[len(fileMagic):]
	gen := binary.LittleEndian.Uint64(b)
	sum := binary.LittleEndian.Uint32(b[8:])
	body := b[12:]
	if crc32.ChecksumIEEE(body) != sum {
		return nil, 0, false
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars, gen, true
}

// writeAtomic replaces path with b: temp file in the same directory, fsync, rename, fsync of
// the directory.
func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
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
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
