package bootenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rampart-iot/rampart"
)

// fakePrintenv and fakeSetenv stand in for U-Boot's tools, which need a real environment
// partition: they keep "key=value" lines in env.txt beside themselves and follow the tools'
// command-line and exit-status conventions.
const fakePrintenv = `#!/bin/sh
f="${0%/*}/env.txt"
[ "$1" = "-n" ] || { echo "usage" >&2; exit 2; }
line=$(grep "^$2=" "$f" 2>/dev/null) || { echo "## Error: \"$2\" not defined" >&2; exit 1; }
printf '%s\n' "${line#*=}"
`

const fakeSetenv = `#!/bin/sh
f="${0%/*}/env.txt"
[ "$1" = "-s" ] || { echo "usage" >&2; exit 2; }
touch "$f"
cp "$f" "$f.tmp"
while IFS= read -r line; do
	case "$line" in ''|'#'*) continue;; esac
	key=${line%% *}
	if [ "$key" = "$line" ]; then val=""; else val=${line#* }; fi
	grep -v "^$key=" "$f.tmp" > "$f.tmp2"
	mv "$f.tmp2" "$f.tmp"
	if [ -n "$val" ]; then printf '%s=%s\n' "$key" "$val" >> "$f.tmp"; fi
done < "$2"
mv "$f.tmp" "$f"
`

func newTestUBoot(t testing.TB) *UBoot {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"fw_printenv": fakePrintenv, "fw_setenv": fakeSetenv} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &UBoot{Printenv: filepath.Join(dir, "fw_printenv"), Setenv: filepath.Join(dir, "fw_setenv"), ScriptDir: t.TempDir()}
}

func backends(t *testing.T) map[string]func(t *testing.T) Env {
	t.Helper()
	return map[string]func(t *testing.T) Env{
		"file":  func(t *testing.T) Env { return &File{Path: filepath.Join(t.TempDir(), "env")} },
		"uboot": func(t *testing.T) Env { return newTestUBoot(t) },
		"grub": func(t *testing.T) Env {
			// The real tool from Debian's grub-common when installed.
			if _, err := exec.LookPath("grub-editenv"); err != nil {
				if os.Getenv("RAMPART_REQUIRE_TOOLS") == "1" {
					t.Fatal("RAMPART_REQUIRE_TOOLS=1 but grub-editenv is not installed")
				}
				t.Skip("grub-editenv not installed")
			}
			return &GRUB{File: filepath.Join(t.TempDir(), "grubenv")}
		},
	}
}

func TestEnv(t *testing.T) {
	t.Parallel()
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			env := open(t)
			got, err := env.Get(ctx, BootSlot)
			if err != nil || len(got) != 0 {
				t.Fatalf("Get(boot_slot) on a new env = %v, %v, want empty", got, err)
			}
			if err := env.Set(ctx, map[string]string{BootSlot: "B", UpgradeAvailable: "1", "note": "two words"}); err != nil {
				t.Fatal(err)
			}
			if err := env.Set(ctx, map[string]string{BootCount: "2", UpgradeAvailable: ""}); err != nil {
				t.Fatal(err)
			}
			got, err = env.Get(ctx, BootSlot, UpgradeAvailable, BootCount, "note", "missing")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{BootSlot: "B", BootCount: "2", "note": "two words"}
			if len(got) != len(want) {
				t.Errorf("Get = %v, want %v", got, want)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("Get()[%q] = %q, want %q", k, got[k], v)
				}
			}
			for _, bad := range []map[string]string{{"a=b": "1"}, {"": "1"}, {"k": "line\nbreak"}, {"with space": "1"}} {
				if err := env.Set(ctx, bad); !errors.Is(err, rampart.ErrInvalid) {
					t.Errorf("Set(%q) = %v, want ErrInvalid", bad, err)
				}
			}
		})
	}
}

func TestFileSurvivesTornCopy(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := &File{Path: filepath.Join(t.TempDir(), "env")}
	if err := f.Set(ctx, map[string]string{BootSlot: "A"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Set(ctx, map[string]string{BootSlot: "B"}); err != nil {
		t.Fatal(err)
	}
	// The second write went to the redundant copy; tear it as a power loss mid-write would on a
	// file system without atomic rename.
	b, err := os.ReadFile(f.Path + ".redund")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Path+".redund", b[:len(b)-2], 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := f.Get(ctx, BootSlot)
	if err != nil || got[BootSlot] != "A" {
		t.Errorf("Get(boot_slot) after a torn write = %v, %v, want the previous value A", got, err)
	}
	// The next write overwrites the torn copy, not the good one.
	if err := f.Set(ctx, map[string]string{BootCount: "1"}); err != nil {
		t.Fatal(err)
	}
	got, err = f.Get(ctx, BootSlot, BootCount)
	if err != nil || got[BootSlot] != "A" || got[BootCount] != "1" {
		t.Errorf("Get after rewriting = %v, %v, want boot_slot=A bootcount=1", got, err)
	}
}

func TestSimulateBoot(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	slots := [2]string{"A", "B"}
	env := &File{Path: filepath.Join(t.TempDir(), "env")}
	if got, err := SimulateBoot(ctx, env, slots); err != nil || got != "A" {
		t.Fatalf("SimulateBoot(empty env) = %q, %v, want A", got, err)
	}
	if err := env.Set(ctx, map[string]string{BootSlot: "B", UpgradeAvailable: "1", BootCount: "0", BootLimit: "2"}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"B", "B", "A", "A"} {
		got, err := SimulateBoot(ctx, env, slots)
		if err != nil || got != want {
			t.Fatalf("boot %d: SimulateBoot = %q, %v, want %q", i+1, got, err, want)
		}
	}
	vars, err := env.Get(ctx, BootSlot, UpgradeAvailable, BootCount)
	if err != nil || vars[BootSlot] != "A" || vars[UpgradeAvailable] != "0" || vars[BootCount] != "0" {
		t.Errorf("env after fallback = %v, %v, want boot_slot=A upgrade_available=0 bootcount=0", vars, err)
	}
}
