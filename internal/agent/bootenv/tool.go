package bootenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// maxToolOutput bounds what is read from a bootloader tool.
const maxToolOutput = 64 << 10

// UBoot is an [Env] on U-Boot's userspace tools. Get runs "fw_printenv -n KEY" per key; Set
// writes a script and runs "fw_setenv -s SCRIPT", which applies every line in one environment
// write (and, with a redundant environment configured in fw_env.config, to the older copy).
type UBoot struct {
	// Printenv and Setenv are the tool paths; empty means "fw_printenv" and "fw_setenv" on PATH.
	Printenv, Setenv string
	// Config, if set, is passed as "-c Config" (an fw_env.config other than /etc/fw_env.config).
	Config string
	// ScriptDir holds the temporary script for Set; empty means os.TempDir().
	ScriptDir string
}

// Get implements [Env].
func (u *UBoot) Get(ctx context.Context, keys ...string) (map[string]string, error) {
	if err := checkKeys(keys); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		stdout, stderr, err := run(ctx, or(u.Printenv, "fw_printenv"), append(u.configArgs(), "-n", k)...)
		if err != nil {
			if strings.Contains(stderr, "not defined") {
				continue
			}
			return nil, fmt.Errorf("fw_printenv %s: %w: %s", k, err, strings.TrimSpace(stderr))
		}
		if v := strings.TrimSuffix(stdout, "\n"); v != "" {
			out[k] = v
		}
	}
	return out, nil
}

// Set implements [Env].
func (u *UBoot) Set(ctx context.Context, vars map[string]string) error {
	if err := checkVars(vars); err != nil {
		return err
	}
	if len(vars) == 0 {
		return nil
	}
	var script strings.Builder
	for _, k := range sortedKeys(vars) {
		if v := vars[k]; v == "" {
			script.WriteString(k + "\n") // a name alone deletes the variable
		} else {
			script.WriteString(k + " " + v + "\n")
		}
	}
	f, err := os.CreateTemp(u.ScriptDir, "fw_setenv*.script")
	if err != nil {
		return fmt.Errorf("fw_setenv script: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script.String()); err != nil {
		f.Close()
		return fmt.Errorf("fw_setenv script: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("fw_setenv script: %w", err)
	}
	if _, stderr, err := run(ctx, or(u.Setenv, "fw_setenv"), append(u.configArgs(), "-s", f.Name())...); err != nil {
		return fmt.Errorf("fw_setenv: %w: %s", err, strings.TrimSpace(stderr))
	}
	return nil
}

func (u *UBoot) configArgs() []string {
	if u.Config == "" {
		return nil
	}
	return []string{"-c", u.Config}
}

// GRUB is an [Env] on a GRUB environment block through grub-editenv: Get runs
// "grub-editenv FILE list", Set runs one "grub-editenv FILE set k=v ..." (grub-editenv writes
// FILE.new and renames it, so all keys change together). A removed key is set to "", which
// reads back as absent.
type GRUB struct {
	// File is the environment block, typically /boot/grub/grubenv.
	File string
	// Editenv is the tool path; empty means "grub-editenv" on PATH.
	Editenv string
}

// Get implements [Env].
func (g *GRUB) Get(ctx context.Context, keys ...string) (map[string]string, error) {
	if err := checkKeys(keys); err != nil {
		return nil, err
	}
	if _, err := os.Stat(g.File); err != nil {
		if os.IsNotExist(err) {
			return map[string]string{}, nil
		}
		return nil, fmt.Errorf("grub environment: %w", err)
	}
	stdout, stderr, err := run(ctx, or(g.Editenv, "grub-editenv"), g.File, "list")
	if err != nil {
		return nil, fmt.Errorf("grub-editenv list: %w: %s", err, strings.TrimSpace(stderr))
	}
	all := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && v != "" {
			all[k] = v
		}
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if v, ok := all[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

// Set implements [Env].
func (g *GRUB) Set(ctx context.Context, vars map[string]string) error {
	if err := checkVars(vars); err != nil {
		return err
	}
	if len(vars) == 0 {
		return nil
	}
	args := []string{g.File, "set"}
	for _, k := range sortedKeys(vars) {
		args = append(args, k+"="+vars[k])
	}
	if _, stderr, err := run(ctx, or(g.Editenv, "grub-editenv"), args...); err != nil {
		return fmt.Errorf("grub-editenv set: %w: %s", err, strings.TrimSpace(stderr))
	}
	return syncDir(filepath.Dir(g.File))
}

// run runs a tool with bounded output.
func run(ctx context.Context, name string, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	stdout := &limitedBuffer{max: maxToolOutput}
	stderr := &limitedBuffer{max: maxToolOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// limitedBuffer keeps the first max bytes written to it and discards the rest.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
