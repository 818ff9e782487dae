package tufclient

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// FuzzTrustedRoot feeds arbitrary bytes to the loader of a provisioned root.json. It must not
// panic, and whatever it accepts must be a root signed by a threshold of its own keys.
func FuzzTrustedRoot(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.root.json")
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"signed":{"_type":"root"},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := checkRoot(data); err != nil {
			return // refusing input is fine; panicking is not
		}
		root, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(data)
		if err != nil {
			t.Fatalf("checkRoot accepted %q that does not parse: %v", data, err)
		}
		if root.Signed.Roles[metadata.ROOT] == nil || root.Signed.Roles[metadata.ROOT].Threshold < 1 {
			t.Errorf("checkRoot accepted a root without a root role threshold: %q", data)
		}
	})
}
