package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// writeJSON prints v as indented JSON, the exact API shape, for scripts and jq.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table collects rows and prints them aligned in columns.
type table struct {
	rows [][]string
}

func newTable(header ...string) *table { return &table{rows: [][]string{header}} }

// row adds one line; an empty cell prints as "-" so columns stay readable.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	t.rows = append(t.rows, cells)
}

// write aligns the columns with two spaces between them and no trailing blanks.
func (t *table) write(w io.Writer) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for line := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// fields prints "Key:  value" lines for show views, values aligned, with indented lines
// (one attribute, one interface) under a key.
type fields struct {
	lines []fieldLine
}

type fieldLine struct {
	key, value string
	sub        bool
}

// add adds one line; an empty value prints as "-".
func (f *fields) add(key, value string) {
	if value == "" {
		value = "-"
	}
	f.lines = append(f.lines, fieldLine{key: key, value: value})
}

// sub adds an indented line under the previous key.
func (f *fields) sub(text string) {
	f.lines = append(f.lines, fieldLine{value: text, sub: true})
}

func (f *fields) write(w io.Writer) error {
	width := 0
	for _, l := range f.lines {
		if !l.sub {
			width = max(width, len(l.key)+1)
		}
	}
	var b strings.Builder
	for _, l := range f.lines {
		if l.sub {
			fmt.Fprintf(&b, "  %s\n", l.value)
			continue
		}
		fmt.Fprintf(&b, "%-*s  %s\n", width, l.key+":", l.value)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// stamp renders a time for show views: UTC RFC 3339, or "never".
func stamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// ago renders how long before now t was, coarsely: "just now", "3m ago", "5h ago", "2d ago",
// or "never". Tables use it; show views print the exact time.
func ago(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	d := now.Sub(*t)
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

// list joins a string list for a table cell.
func list(xs []string) string { return strings.Join(xs, ",") }

// pairs renders a map as sorted key=value pairs.
func pairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// yesNo renders a bool for show views.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
