package collect

import (
	"bytes"
	"fmt"
	"io"

	"github.com/rampart-iot/rampart"
)

// maxOSReleaseKeys bounds the variables ParseOSRelease keeps; real files have about twenty.
const maxOSReleaseKeys = 256

// ParseOSRelease parses an os-release(5) file into its variables. Values may be unquoted, or
// quoted with single or double quotes; inside double quotes a backslash escapes `"`, `\`, `$` and
// "`", and outside quotes it escapes any character. Comments and blank lines are skipped.
//
// The file only describes the system, so a malformed line (no "=", a bad variable name, an
// unterminated quote) is skipped rather than refused. A line longer than 64 KiB or more than 256
// variables is an error wrapping rampart.ErrTooLarge.
func ParseOSRelease(r io.Reader) (map[string]string, error) {
	vars := map[string]string{}
	ls := newLineScanner(r)
	for ls.scan() {
		line := bytes.Trim(ls.line(), " \t")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, raw, ok := bytes.Cut(line, []byte("="))
		if !ok || !validVarName(key) {
			continue
		}
		value, ok := unquoteShell(bytes.Trim(raw, " \t"))
		if !ok {
			continue
		}
		if _, seen := vars[string(key)]; !seen && len(vars) == maxOSReleaseKeys {
			return nil, fmt.Errorf("parse os-release: more than %d variables: %w", maxOSReleaseKeys, rampart.ErrTooLarge)
		}
		vars[string(key)] = value
	}
	if err := ls.err(); err != nil {
		return nil, fmt.Errorf("parse os-release: %w", err)
	}
	return vars, nil
}

// validVarName reports whether name is a shell variable name.
func validVarName(name []byte) bool {
	for i, c := range name {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case i > 0 && c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return len(name) > 0
}

// unquoteShell decodes a shell word made of unquoted, 'single-quoted' and "double-quoted" parts,
// as os-release(5) allows. It reports false for an unterminated quote.
func unquoteShell(s []byte) (string, bool) {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			end := bytes.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return "", false
			}
			b = append(b, s[i+1:i+1+end]...)
			i += 1 + end
		case '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && bytes.IndexByte([]byte("\"\\$`"), s[i+1]) >= 0 {
					i++
				}
				b = append(b, s[i])
			}
			if i == len(s) {
				return "", false
			}
		case '\\':
			if i+1 < len(s) {
				i++
			}
			b = append(b, s[i])
		default:
			b = append(b, c)
		}
	}
	return string(b), true
}
