package journal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

func mustOpen(t testing.TB, path string) *Journal {
	t.Helper()
	j, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func steps(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Step)
	}
	return out
}

func TestAppendReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal")
	j := mustOpen(t, path)
	if _, ok := j.Last(); ok {
		t.Fatal("Last() on a new journal found an entry")
	}
	want := []Entry{
		{Step: "begin", Deployment: "d1", Data: map[string]string{"to": "B"}},
		{Step: "written", Deployment: "d1"},
	}
	for _, e := range want {
		if err := j.Append(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	j = mustOpen(t, path)
	if got := j.Entries(); !reflect.DeepEqual(got, want) {
		t.Errorf("Entries() after reopen = %+v, want %+v", got, want)
	}
	if last, ok := j.Last(); !ok || last.Step != "written" {
		t.Errorf("Last() = %+v, %v, want written", last, ok)
	}
	if err := j.Reset(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(t.Context(), Entry{Step: "begin", Deployment: "d2"}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j = mustOpen(t, path)
	if got := steps(j.Entries()); !reflect.DeepEqual(got, []string{"begin"}) {
		t.Errorf("Entries() after Reset and one Append = %v, want [begin]", got)
	}
	prev := mustOpen(t, path+".prev")
	if got := steps(prev.Entries()); !reflect.DeepEqual(got, []string{"begin", "written"}) {
		t.Errorf("previous journal = %v, want [begin written]", got)
	}
}

// TestTornLastRecord cuts the last record at every byte, as a power loss during Append can:
// the journal reopens with the records before it and appends after them.
func TestTornLastRecord(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	j := mustOpen(t, full)
	for _, s := range []string{"begin", "written", "switched"} {
		if err := j.Append(t.Context(), Entry{Step: s, Deployment: "d1", Data: map[string]string{"k": s}}); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := Encode(Entry{Step: "switched", Deployment: "d1", Data: map[string]string{"k": "switched"}})
	start := len(b) - len(rec)
	for cut := start; cut < len(b); cut++ {
		path := filepath.Join(dir, fmt.Sprintf("torn%d", cut))
		if err := os.WriteFile(path, b[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		j := mustOpen(t, path)
		if got := steps(j.Entries()); !reflect.DeepEqual(got, []string{"begin", "written"}) {
			t.Fatalf("Open(cut at %d) entries = %v, want [begin written]", cut, got)
		}
		if err := j.Append(t.Context(), Entry{Step: "rolled-back"}); err != nil {
			t.Fatal(err)
		}
		j.Close()
		j = mustOpen(t, path)
		if got := steps(j.Entries()); !reflect.DeepEqual(got, []string{"begin", "written", "rolled-back"}) {
			t.Fatalf("after cut at %d and Append: entries = %v, want [begin written rolled-back]", cut, got)
		}
	}
}

// TestJournalProperty: whatever happens to the bytes after the last fsynced record, reopening
// yields exactly the records appended before it, and appending continues from there.
func TestJournalProperty(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rapid.Check(t, func(t *rapid.T) {
		path := filepath.Join(dir, fmt.Sprintf("j%d", rapid.IntRange(0, 1<<30).Draw(t, "name")))
		os.Remove(path)
		j, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var want []Entry
		for i, n := 0, rapid.IntRange(0, 8).Draw(t, "n"); i < n; i++ {
			e := Entry{
				Step:       rapid.SampledFrom([]string{"begin", "written", "switched", "committed"}).Draw(t, "step"),
				Deployment: rapid.String().Draw(t, "deployment"),
			}
			if rapid.Bool().Draw(t, "data") {
				e.Data = map[string]string{rapid.String().Draw(t, "key"): rapid.String().Draw(t, "value")}
			}
			if err := j.Append(t.Context(), e); err != nil {
				t.Fatal(err)
			}
			want = append(want, e)
		}
		j.Close()
		garbage := rapid.SliceOfN(rapid.Byte(), 0, 40).Draw(t, "garbage")
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(garbage)
		f.Close()
		j, err = Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		got := j.Entries()
		// Garbage may by chance form a valid record; it can only add, never remove.
		if len(got) < len(want) || len(want) > 0 && !reflect.DeepEqual(got[:len(want)], normalize(want)) {
			t.Fatalf("entries = %+v, want prefix %+v", got, want)
		}
	})
}

// normalize makes entries compare equal to their JSON round trip (invalid UTF-8 becomes U+FFFD).
func normalize(es []Entry) []Entry {
	var out []Entry
	for _, e := range es {
		rec, _ := Encode(e)
		got, _, _ := Replay(append([]byte(Magic), rec...))
		out = append(out, got...)
	}
	return out
}

func FuzzReplay(f *testing.F) {
	f.Add([]byte(Magic))
	f.Add([]byte("garbage"))
	var b bytes.Buffer
	b.WriteString(Magic)
	for _, s := range []string{"begin", "written", "switched"} {
		rec, _ := Encode(Entry{Step: s, Deployment: "d", Data: map[string]string{"to": "B"}})
		b.Write(rec)
		f.Add(append([]byte(nil), b.Bytes()...))
		f.Add(append([]byte(nil), b.Bytes()[:b.Len()-3]...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, n, err := Replay(data)
		if err != nil {
			return
		}
		if n < len(Magic) || n > len(data) {
			t.Fatalf("Replay valid prefix = %d of %d bytes", n, len(data))
		}
		// The valid prefix alone replays to the same entries, and every entry re-encodes to a
		// record that replays to itself.
		again, n2, err := Replay(data[:n])
		if err != nil || n2 != n || !reflect.DeepEqual(again, entries) {
			t.Fatalf("Replay(prefix) = %v, %d, %v, want %v, %d", again, n2, err, entries, n)
		}
		for _, e := range entries {
			if e.Step == "" {
				t.Fatalf("Replay returned an entry without a step")
			}
			if got := normalize([]Entry{e}); len(got) != 1 || !reflect.DeepEqual(got[0], e) {
				t.Fatalf("entry %+v does not round-trip: %+v", e, got)
			}
		}
	})
}
