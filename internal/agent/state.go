package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rampart-iot/rampart/internal/nativeproto"
)

// State is what the agent remembers across restarts, in its state directory:
//
//	key        the Ed25519 private key seed (0600); generated once, never sent anywhere
//	key.next   a key being rotated in, until the server confirmed the rotation
//	state.json the device ID, the current token, what was last reported and the update in
//	           progress (see UpdateState)
//	journal    the installer's step journal (internal/agent/journal)
//	downloads/ verified images and partial downloads (Options.DownloadDir)
type State struct {
	DeviceID      string            `json:"device_id,omitempty"`
	Status        string            `json:"status,omitempty"`
	Token         string            `json:"token,omitempty"`
	TokenExpires  time.Time         `json:"token_expires,omitzero"`
	InventoryHash string            `json:"inventory_hash,omitempty"`
	ReportedAttrs map[string]string `json:"reported_attributes,omitempty"`
	PollIntervalS int               `json:"poll_interval_s,omitempty"`

	// Update is the update the agent works on, until the server acknowledged its outcome.
	Update *UpdateState `json:"update,omitempty"`
	// FinalReported is the last deployment whose outcome the server acknowledged, so that a
	// restart does not report it again.
	FinalReported string `json:"final_reported,omitempty"`
	// Installed is the version of the last update that succeeded: the firmware version the
	// agent reports when Options.Firmware has none.
	Installed string `json:"installed,omitempty"`
}

// UpdateState is how far the agent got with one piece of work. The installer's journal says
// where the install itself stands; this says what happened around it.
type UpdateState struct {
	Work nativeproto.Work `json:"work"`
	// Reported is the furthest state the server acknowledged.
	Reported string `json:"reported,omitempty"`
	// Phase is the furthest step the agent took: "downloaded" (the verified image is staged),
	// "installing" (the installer was called) or "rebooting" (the reboot was asked for).
	Phase string `json:"phase,omitempty"`
	// Final is the outcome (success, failure, rolled-back) waiting to be acknowledged, and
	// Log the excerpt that goes with it.
	Final string `json:"final,omitempty"`
	Log   string `json:"log,omitempty"`
}

const (
	keyFile     = "key"
	nextKeyFile = "key.next"
	stateFile   = "state.json"
)

// loadOrCreateKey returns the device key, generating it on first start.
func loadOrCreateKey(dir string) (ed25519.PrivateKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	k, err := readKey(filepath.Join(dir, keyFile))
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate device key: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, keyFile), priv.Seed(), 0o600); err != nil {
		return nil, fmt.Errorf("save device key: %w", err)
	}
	return priv, nil
}

func readKey(path string) (ed25519.PrivateKey, error) {
	seed, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("device key %s is %d bytes, want %d: refusing to replace it", path, len(seed), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func loadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &State{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read agent state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		// A state file damaged by power loss costs a re-authentication, nothing more: the
		// key, which is what identifies the device, lives in its own file.
		return &State{}, nil
	}
	return &st, nil
}

// saveState writes st unless the file already holds exactly that: an idle check-in then
// writes nothing, which spares the device's flash and the fsync.
func saveState(dir string, st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode agent state: %w", err)
	}
	path := filepath.Join(dir, stateFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("save agent state: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data so that after a crash the file holds either the
// old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
