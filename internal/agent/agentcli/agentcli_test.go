package agentcli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/rampart-iot/rampart/internal/agent"
	"github.com/rampart-iot/rampart/internal/agent/bootenv"
	"github.com/rampart-iot/rampart/internal/agent/installer"
	"github.com/rampart-iot/rampart/internal/config"
)

// TestDocsListEveryFlag keeps the agent's table in docs/configuration.md true, the update
// flags of this package included.
func TestDocsListEveryFlag(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	Command("agent", func(string) string { return "" }, &bytes.Buffer{}).Flags().VisitAll(func(f *pflag.Flag) {
		if !regexp.MustCompile("`--" + regexp.QuoteMeta(f.Name) + "`").Match(doc) {
			t.Errorf("docs/configuration.md does not list --%s", f.Name)
		}
	})
}

func TestInstallFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		args    []string
		want    string // installer type; "" for none
		reboot  bool
		wantErr string
	}{
		{name: "default", want: ""},
		{name: "file", args: []string{"--installer", "file", "--install-target", filepath.Join(dir, "app")}, want: "*installer.File"},
		{name: "file without target", args: []string{"--installer", "file"}, wantErr: "--install-target"},
		{name: "script", args: []string{"--installer", "script"}, want: "*installer.Script"},
		{name: "ab", args: []string{"--installer", "ab", "--slots", "a=/dev/p2,b=/dev/p3", "--bootenv", "file:" + filepath.Join(dir, "env")},
			want: "*installer.AB", reboot: true},
		{name: "ab without reboot", args: []string{"--installer", "ab", "--slots", "a=/dev/p2,b=/dev/p3", "--reboot-cmd", ""}, want: "*installer.AB"},
		{name: "ab one slot", args: []string{"--installer", "ab", "--slots", "a=/dev/p2"}, wantErr: "two slots"},
		{name: "ab same names", args: []string{"--installer", "ab", "--slots", "a=/dev/p2,a=/dev/p3"}, wantErr: "both slots"},
		{name: "ab bad env", args: []string{"--installer", "ab", "--slots", "a=/dev/p2,b=/dev/p3", "--bootenv", "grub"}, wantErr: "--bootenv"},
		{name: "rauc", args: []string{"--installer", "rauc", "--installer-args", "--conf=/etc/rauc/system.conf"}, want: "*installer.RAUC", reboot: true},
		{name: "swupdate", args: []string{"--installer", "swupdate", "--swupdate-rollback", "fw_setenv boot_slot A"}, want: "*installer.SWUpdate", reboot: true},
		{name: "swupdate without rollback", args: []string{"--installer", "swupdate"}, wantErr: "--swupdate-rollback"},
		{name: "unknown", args: []string{"--installer", "rpm"}, wantErr: "want none, ab, file, script, rauc or swupdate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
			f := addInstallFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			var o agent.Options
			err := f.apply(&o, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("apply(%v) = %v, want an error about %s", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("apply(%v) = %v", tc.args, err)
			}
			got := ""
			if o.Installer != nil {
				got = typeName(o.Installer)
			}
			if got != tc.want || (o.Reboot != nil) != tc.reboot {
				t.Errorf("apply(%v): installer %s, reboot %v; want %s, %v", tc.args, got, o.Reboot != nil, tc.want, tc.reboot)
			}
		})
	}
}

func typeName(i installer.Installer) string {
	switch i.(type) {
	case *installer.AB:
		return "*installer.AB"
	case *installer.File:
		return "*installer.File"
	case *installer.Script:
		return "*installer.Script"
	case *installer.RAUC:
		return "*installer.RAUC"
	case *installer.SWUpdate:
		return "*installer.SWUpdate"
	}
	return "?"
}

func TestParseBootEnv(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bootenv.Env{
		"uboot":          &bootenv.UBoot{},
		"grub:/boot/env": &bootenv.GRUB{File: "/boot/env"},
		"file:/tmp/env":  &bootenv.File{Path: "/tmp/env"},
	} {
		got, err := parseBootEnv(in)
		if err != nil || got == nil {
			t.Errorf("parseBootEnv(%q) = %v, %v", in, got, err)
			continue
		}
		if gt, wt := typeOf(got), typeOf(want); gt != wt {
			t.Errorf("parseBootEnv(%q) = %s, want %s", in, gt, wt)
		}
	}
	for _, in := range []string{"", "uboot:x", "grub", "file:", "efi"} {
		if _, err := parseBootEnv(in); err == nil {
			t.Errorf("parseBootEnv(%q) accepted", in)
		}
	}
}

func typeOf(e bootenv.Env) string {
	switch e.(type) {
	case *bootenv.UBoot:
		return "uboot"
	case *bootenv.GRUB:
		return "grub"
	case *bootenv.File:
		return "file"
	}
	return "?"
}

// TestInstallFlagsFromEnvironment: the update flags are layered like the others.
func TestInstallFlagsFromEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{"RAMPART_INSTALLER": "rpm"}
	cmd := Command("agent", func(k string) string { return env[k] }, &bytes.Buffer{})
	cmd.SetArgs([]string{"--device-type", "gw", "--serial", "S1", "--state", t.TempDir()})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), `--installer "rpm"`) {
		t.Errorf("agent with RAMPART_INSTALLER=rpm = %v, want the installer refused", err)
	}
}

// TestInstallFlagsFromConfigFile checks list settings in the YAML file: each health command
// stays one command even with commas in it, and the slots list fills both slots.
func TestInstallFlagsFromConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	yaml := "device_type: gw\nstate: " + dir + "\ninstaller: ab\nslots: [A=/dev/p2, B=/dev/p3]\nbootenv: file:" + filepath.Join(dir, "env") + "\n" +
		"health_cmd:\n  - test -e /run/app.pid\n  - 'curl -fsS http://127.0.0.1:8080/health,ready'\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	c := config.AgentFlags(fs)
	f := addInstallFlags(fs)
	if err := fs.Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	if err := config.LoadAgent(fs, c, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	want := []string{"test -e /run/app.pid", "curl -fsS http://127.0.0.1:8080/health,ready"}
	if !slices.Equal(f.healthCmds, want) {
		t.Errorf("health commands = %q, want %q", f.healthCmds, want)
	}
	var o agent.Options
	if err := f.apply(&o, nil); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if typeName(o.Installer) != "*installer.AB" {
		t.Errorf("installer = %s, want A/B", typeName(o.Installer))
	}
}
