package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/rampart-iot/rampart"
)

func mustWriteFile(t testing.TB, name, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadClient(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	full := mustWriteFile(t, filepath.Join(dir, "full.yaml"), "server: https://file.example\ntoken: rmp_file\noutput: json\n")
	partial := mustWriteFile(t, filepath.Join(dir, "partial.yaml"), "token: rmp_file\n")
	empty := mustWriteFile(t, filepath.Join(dir, "empty.yaml"), "")
	xdg := filepath.Join(dir, "xdg")
	mustWriteFile(t, filepath.Join(xdg, "rampart", "cli.yaml"), "server: https://xdg.example\n")
	home := filepath.Join(dir, "home")
	mustWriteFile(t, filepath.Join(home, ".config", "rampart", "cli.yaml"), "server: https://home.example\n")

	tests := []struct {
		name string
		env  map[string]string
		file string
		want Client
	}{
		{"defaults", nil, "", Client{Server: "http://127.0.0.1:7780", Output: "table"}},
		{"missing default file", map[string]string{"HOME": filepath.Join(dir, "nobody")}, "", Client{Server: "http://127.0.0.1:7780", Output: "table"}},
		{"named file", nil, full, Client{Server: "https://file.example", Token: "rmp_file", Output: "json"}},
		{"file keeps unset defaults", nil, partial, Client{Server: "http://127.0.0.1:7780", Token: "rmp_file", Output: "table"}},
		{"empty file", nil, empty, Client{Server: "http://127.0.0.1:7780", Output: "table"}},
		{"RAMPART_CLI_CONFIG", map[string]string{"RAMPART_CLI_CONFIG": full}, "", Client{Server: "https://file.example", Token: "rmp_file", Output: "json"}},
		{"named file beats RAMPART_CLI_CONFIG", map[string]string{"RAMPART_CLI_CONFIG": full}, partial, Client{Server: "http://127.0.0.1:7780", Token: "rmp_file", Output: "table"}},
		{"XDG_CONFIG_HOME", map[string]string{"XDG_CONFIG_HOME": xdg, "HOME": home}, "", Client{Server: "https://xdg.example", Output: "table"}},
		{"HOME", map[string]string{"HOME": home}, "", Client{Server: "https://home.example", Output: "table"}},
		{"env beats file", map[string]string{
			"RAMPART_SERVER": "https://env.example", "RAMPART_TOKEN": "rmp_env", "RAMPART_OUTPUT": "table",
		}, full, Client{Server: "https://env.example", Token: "rmp_env", Output: "table"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := LoadClient(envOf(tt.env), tt.file)
			if err != nil {
				t.Fatalf("LoadClient(%v, %q) error: %v", tt.env, tt.file, err)
			}
			if got != tt.want {
				t.Errorf("LoadClient(%v, %q) = %+v, want %+v", tt.env, tt.file, got, tt.want)
			}
		})
	}
}

func TestLoadClientErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unknown := mustWriteFile(t, filepath.Join(dir, "unknown.yaml"), "server: https://x.example\ntokne: rmp_typo\n")
	garbage := mustWriteFile(t, filepath.Join(dir, "garbage.yaml"), "server: [unclosed\n")
	missing := filepath.Join(dir, "missing.yaml")

	tests := []struct {
		name string
		env  map[string]string
		file string
		kind error
	}{
		{"missing named file", nil, missing, fs.ErrNotExist},
		{"missing RAMPART_CLI_CONFIG", map[string]string{"RAMPART_CLI_CONFIG": missing}, "", fs.ErrNotExist},
		{"unknown key", nil, unknown, rampart.ErrInvalid},
		{"malformed YAML", nil, garbage, rampart.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadClient(envOf(tt.env), tt.file)
			if !errors.Is(err, tt.kind) {
				t.Errorf("LoadClient(%v, %q) error = %v, want %v", tt.env, tt.file, err, tt.kind)
			}
		})
	}
}

func TestClientValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		c  Client
		ok bool
	}{
		{Client{Server: "http://127.0.0.1:7780", Output: "table"}, true},
		{Client{Server: "https://rampart.example.com/", Output: "json"}, true},
		{Client{Server: "127.0.0.1:7780", Output: "table"}, false},
		{Client{Server: "ftp://x", Output: "table"}, false},
		{Client{Server: "http://x", Output: "yaml"}, false},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%+v.Validate() = %v, want ok %v", tt.c, err, tt.ok)
		}
		if err != nil && !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("%+v.Validate() = %v, want an ErrInvalid", tt.c, err)
		}
	}
}
