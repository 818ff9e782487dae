package rampart_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/rampart-iot/rampart"

type listedPackage struct {
	ImportPath string
	Dir        string
	Name       string
	GoFiles    []string
	Deps       []string
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps=false", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// domain packages hold the business rules and must not know transports or databases.
var domain = []string{"fleet", "access", "filter", "release", "sbom", "tuf", "rollout", "deployment", "vuln", "detect", "audit", "notify"}

// adapters are the packages domain code must never import.
// The blob and broker interface packages are allowed; their implementations are not.
var adapters = []string{"store", "api", "deviceapi", "server", "cli", "client", "web", "broker/embedded", "broker/external",
	"blob/localfs", "blob/s3", "config", "jsonhttp"}

func isUnder(path, prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }

func TestImportRules(t *testing.T) {
	t.Parallel()
	forbiddenStd := []string{"net/http", "database/sql"}
	forbiddenThirdParty := []string{"github.com/jackc/pgx", "modernc.org/sqlite", "github.com/eclipse/paho", "github.com/mochi-mqtt", "github.com/minio"}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/internal/")
		for _, d := range domain {
			if !isUnder(rel, d) {
				continue
			}
			for _, dep := range p.Deps {
				for _, f := range append(forbiddenStd, forbiddenThirdParty...) {
					if isUnder(dep, f) {
						t.Errorf("domain package %s depends on %s", p.ImportPath, dep)
					}
				}
				for _, a := range adapters {
					if isUnder(dep, module+"/internal/"+a) {
						t.Errorf("domain package %s depends on adapter %s", p.ImportPath, dep)
					}
				}
			}
		}
		if isUnder(rel, "agent") || p.ImportPath == module+"/cmd/rampart-agent" {
			for _, dep := range p.Deps {
				for _, f := range append([]string{"database/sql"}, forbiddenThirdParty...) {
					if isUnder(dep, f) {
						t.Errorf("agent package %s depends on %s", p.ImportPath, dep)
					}
				}
				for _, s := range []string{"store", "api", "deviceapi", "server", "cli", "client", "fleet", "access", "web"} {
					if isUnder(dep, module+"/internal/"+s) {
						t.Errorf("agent package %s depends on server package %s", p.ImportPath, dep)
					}
				}
			}
		}
	}
}

func TestPackageNamesAndDocs(t *testing.T) {
	t.Parallel()
	bad := map[string]bool{"util": true, "utils": true, "common": true, "helpers": true, "misc": true, "pkg": true,
		"models": true, "services": true, "handlers": true, "types": true, "http": true, "errors": true, "log": true}
	for _, p := range listPackages(t) {
		if bad[p.Name] {
			t.Errorf("package %s has a forbidden name", p.ImportPath)
		}
		docs := 0
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if file.Doc != nil && strings.HasPrefix(file.Doc.Text(), "Package "+p.Name+" ") ||
				file.Doc != nil && strings.HasPrefix(file.Doc.Text(), "Command ") {
				docs++
			}
		}
		if docs != 1 {
			t.Errorf("package %s has %d package comments, want exactly 1", p.ImportPath, docs)
		}
	}
}

func TestOnlyConfigReadsEnvironment(t *testing.T) {
	t.Parallel()
	call := regexp.MustCompile(`os\.(Getenv|LookupEnv|Environ)\(`)
	for _, p := range listPackages(t) {
		// Test-support packages (storetest, pgtest) may read test settings.
		if isUnder(p.ImportPath, module+"/internal/config") || strings.HasSuffix(p.Name, "test") {
			continue
		}
		for _, f := range p.GoFiles {
			b, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if call.Match(b) {
				t.Errorf("%s/%s reads the environment; only internal/config may", p.ImportPath, f)
			}
		}
	}
}

func TestFileLength(t *testing.T) {
	t.Parallel()
	for _, p := range listPackages(t) {
		for _, f := range p.GoFiles {
			b, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(b), "\n"); n > 1500 {
				t.Errorf("%s/%s has %d lines; split it at about 1,500", p.ImportPath, f, n)
			}
		}
	}
}
