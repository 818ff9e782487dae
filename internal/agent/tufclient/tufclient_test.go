package tufclient_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/tufclient"
	"github.com/rampart-iot/rampart/internal/tuf"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestRefreshAndDownload(t *testing.T) {
	t.Parallel()
	r, fw := newPublishedRepo(t)
	c, _ := r.newClient(deviceType, "")
	ctx := t.Context()
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	info, err := c.Target(ctx, "releases/acme/fw.swu")
	if err != nil {
		t.Fatalf("Target() = %v", err)
	}
	if info.Version != "1.0.0" || info.Release != "rel-1.0.0" || !slices.Equal(info.DeviceTypes, []string{deviceType}) || info.Length != int64(len(fw)) {
		t.Errorf("Target() = %+v, want version 1.0.0 for %s, %d bytes", info, deviceType, len(fw))
	}
	dest := filepath.Join(t.TempDir(), "fw.swu")
	if err := c.Download(ctx, "releases/acme/fw.swu", dest); err != nil {
		t.Fatalf("Download() = %v", err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, fw) {
		t.Errorf("downloaded %q, want %q", got, fw)
	}
}

// T1 arbitrary installation. go-tuf: TestLengthAndHashValidation, TestNewTimestampUnsigned;
// python-tuf: test_invalid_target_download.
func TestArbitrarySoftware(t *testing.T) {
	t.Parallel()
	t.Run("target bytes not in metadata", func(t *testing.T) {
		t.Parallel()
		r, fw := newPublishedRepo(t)
		c, _ := r.newClient(deviceType, "")
		evil := bytes.Repeat([]byte("X"), len(fw)) // same length, other bytes
		r.setTamper(func(path string, body []byte) []byte {
			if filepath.Dir(path) == "targets/releases/acme" {
				return evil
			}
			return body
		})
		dir := t.TempDir()
		err := c.Download(t.Context(), "releases/acme/fw.swu", filepath.Join(dir, "fw.swu"))
		mustErrorIs(t, "Download(swapped target)", err, tufclient.ErrMismatch)
		mustNoFiles(t, dir)
	})
	t.Run("path not in metadata", func(t *testing.T) {
		t.Parallel()
		r, _ := newPublishedRepo(t)
		c, _ := r.newClient(deviceType, "")
		dir := t.TempDir()
		err := c.Download(t.Context(), "releases/acme/evil.swu", filepath.Join(dir, "evil.swu"))
		mustErrorIs(t, "Download(unlisted path)", err, tufclient.ErrTargetNotFound)
		mustNoFiles(t, dir)
	})
	t.Run("unsigned timestamp", func(t *testing.T) {
		t.Parallel()
		r, _ := newPublishedRepo(t)
		c, dir := r.newClient(deviceType, "")
		if err := c.Refresh(t.Context()); err != nil {
			t.Fatalf("Refresh() = %v", err)
		}
		r.publish("releases/acme/fw2.swu", []byte("fw2"), "2.0.0", deviceType)
		before := dirState(t, dir)
		r.setTamper(func(path string, body []byte) []byte {
			if path == "metadata/timestamp.json" {
				return stripSignatures(t, body)
			}
			return body
		})
		mustErrorIs(t, "Refresh(unsigned timestamp)", c.Refresh(t.Context()), tufclient.ErrBadSignature)
		mustUnchanged(t, dir, before)
	})
}

// T8 rollback. go-tuf: TestNewTimestampVersionRollback; python-tuf:
// test_new_timestamp_version_rollback.
func TestNewTimestampVersionRollback(t *testing.T) {
	t.Parallel()
	r, _ := newPublishedRepo(t)
	c, dir := r.newClient(deviceType, "")
	old := r.metadata("timestamp.json")
	r.publish("releases/acme/fw2.swu", []byte("fw2"), "2.0.0", deviceType)
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	before := dirState(t, dir)
	r.setTamper(func(path string, body []byte) []byte {
		if path == "metadata/timestamp.json" {
			return old // validly signed, unexpired, older
		}
		return body
	})
	mustErrorIs(t, "Refresh(replayed timestamp)", c.Refresh(t.Context()), tufclient.ErrBadVersion)
	mustUnchanged(t, dir, before)
}

// T5 indefinite freeze. go-tuf: TestNewTimestampExpired, TestExpiredMetadata; python-tuf:
// test_new_timestamp_expired.
func TestNewTimestampExpired(t *testing.T) {
	t.Parallel()
	r, _ := newPublishedRepo(t)
	c, dir := r.newClient(deviceType, "")
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	frozen := r.metadata("timestamp.json")
	r.setTamper(func(path string, body []byte) []byte {
		if path == "metadata/timestamp.json" {
			return frozen
		}
		return body
	})
	r.clock.Add(25 * time.Hour) // timestamps live 24h
	if err := r.repo.Refresh(t.Context()); err != nil {
		t.Fatalf("repo.Refresh() = %v", err)
	}
	before := dirState(t, dir)
	mustErrorIs(t, "Refresh(frozen timestamp)", c.Refresh(t.Context()), tufclient.ErrExpired)
	mustUnchanged(t, dir, before)
	dl := t.TempDir()
	mustErrorIs(t, "Download(frozen timestamp)", c.Download(t.Context(), "releases/acme/fw.swu", filepath.Join(dl, "fw")), tufclient.ErrExpired)
	mustNoFiles(t, dl)
}

// T7 mix-and-match. go-tuf: TestNewTargetsHashMismatch, TestNewSnapshotHashMismatch;
// python-tuf: test_new_targets_hash_mismatch, test_new_snapshot_hash_mismatch.
func TestNewTargetsHashMismatch(t *testing.T) {
	t.Parallel()
	for _, role := range []string{releaser, "snapshot"} {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			r, _ := newPublishedRepo(t)
			oldVersion := mustCurrentVersion(t, r, role)
			old := r.metadata(version(oldVersion) + "." + role + ".json")
			r.publish("releases/acme/fw2.swu", []byte("fw2"), "2.0.0", deviceType)
			newName := "metadata/" + version(mustCurrentVersion(t, r, role)) + "." + role + ".json"
			r.setTamper(func(path string, body []byte) []byte {
				if path == newName {
					return old // genuine metadata of another repository state
				}
				return body
			})
			c, dir := r.newClient(deviceType, "")
			before := dirState(t, dir)
			_, err := c.Target(t.Context(), "releases/acme/fw2.swu")
			mustErrorIs(t, "Target(mixed "+role+")", err, tufclient.ErrMismatch)
			if role == "snapshot" {
				delete(before, "/timestamp.json") // the genuine new timestamp is rightly kept
				after := dirState(t, dir)
				delete(after, "/timestamp.json")
				if _, ok := after["/snapshot.json"]; ok {
					t.Errorf("mixed snapshot was persisted")
				}
				return
			}
			if _, ok := dirState(t, dir)["/"+role+".json"]; ok {
				t.Errorf("mixed %s metadata was persisted", role)
			}
		})
	}
}

// T2 endless data. go-tuf: TestMaxMetadataLengths, fetcher TestDownLoadFile "data too long";
// python-tuf: test_max_metadata_lengths, test_download_file_upper_length.
func TestMaxMetadataLengths(t *testing.T) {
	t.Parallel()
	pad := func(n int) func([]byte) []byte {
		return func(b []byte) []byte { return append(slices.Clone(b), bytes.Repeat([]byte(" "), n)...) }
	}
	for _, tc := range []struct {
		name    string
		path    string // served path the proxy inflates
		inflate func([]byte) []byte
		chunked bool
	}{
		{name: "target", path: "targets/releases/acme/", inflate: pad(1 << 20)},
		{name: "target without content-length", path: "targets/releases/acme/", inflate: pad(1 << 20), chunked: true},
		{name: "timestamp", path: "metadata/timestamp.json", inflate: pad(20000)},
		{name: "delegated targets", path: "metadata/2." + releaser + ".json", inflate: pad(1), chunked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, _ := newPublishedRepo(t)
			c, _ := r.newClient(deviceType, "")
			r.mu.Lock()
			r.chunked = tc.chunked
			r.mu.Unlock()
			r.setTamper(func(path string, body []byte) []byte {
				if len(path) >= len(tc.path) && path[:len(tc.path)] == tc.path {
					return tc.inflate(body)
				}
				return body
			})
			dl := t.TempDir()
			err := c.Download(t.Context(), "releases/acme/fw.swu", filepath.Join(dl, "fw"))
			mustErrorIs(t, "Download(inflated "+tc.name+")", err, tufclient.ErrTooLarge)
			mustNoFiles(t, dl)
		})
	}
}

// T9 key compromise below threshold. go-tuf: TestIntermediateRootInclorrectlySigned;
// python-tuf: test_intermediate_root_incorrectly_signed.
func TestIntermediateRootIncorrectlySigned(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t, tuf.InitOptions{RootThreshold: 2, OnlineRootKeys: 2})
	c, dir := r.newClient(deviceType, "")
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	rootKeys, err := r.store.Keys(t.Context(), tuf.RoleRoot)
	if err != nil || len(rootKeys) != 2 {
		t.Fatalf("root keys = %d, %v; want 2", len(rootKeys), err)
	}
	// The attacker holds one of the two root keys and publishes a root trusting its own
	// timestamp key.
	evil, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(r.metadata("1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	evil.ClearSignatures()
	evil.Signed.Version = 2
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := metadata.KeyFromPublicKey(attacker.Public())
	if err := evil.Signed.AddKey(key, tuf.RoleTimestamp); err != nil {
		t.Fatal(err)
	}
	raw, _ := evil.ToBytes(false)
	signed, err := tuf.SignRoot(raw, rootKeys[0])
	if err != nil {
		t.Fatalf("SignRoot() = %v", err)
	}
	r.mu.Lock()
	r.extra["metadata/2.root.json"] = signed
	r.mu.Unlock()
	before := dirState(t, dir)
	mustErrorIs(t, "Refresh(root signed by 1 of 2)", c.Refresh(t.Context()), tufclient.ErrBadSignature)
	mustUnchanged(t, dir, before)
}

// Wrong device (Uptane: hardware identifier check).
func TestWrongDevice(t *testing.T) {
	t.Parallel()
	t.Run("device type", func(t *testing.T) {
		t.Parallel()
		r, _ := newPublishedRepo(t)
		c, _ := r.newClient("gw-y", "")
		_, err := c.Target(t.Context(), "releases/acme/fw.swu")
		mustErrorIs(t, "Target(for gw-x on gw-y)", err, tufclient.ErrWrongDevice)
		dl := t.TempDir()
		mustErrorIs(t, "Download(for gw-x on gw-y)", c.Download(t.Context(), "releases/acme/fw.swu", filepath.Join(dl, "fw")), tufclient.ErrWrongDevice)
		mustNoFiles(t, dl)
	})
	t.Run("hardware revision", func(t *testing.T) {
		t.Parallel()
		r, _ := newPublishedRepo(t)
		data := []byte("fw for rev-b")
		sum := sha256.Sum256(data)
		err := r.repo.AddTargets(t.Context(), releaser, []tuf.Target{{
			Path: "releases/acme/revb.swu", Length: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
			Custom: map[string]any{tuf.CustomDeviceTypes: []string{deviceType}, tuf.CustomHWRevisions: []string{"rev-b"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := r.newClient(deviceType, "rev-a")
		_, err = c.Target(t.Context(), "releases/acme/revb.swu")
		mustErrorIs(t, "Target(for rev-b on rev-a)", err, tufclient.ErrWrongDevice)
	})
}

func TestTimestampResignKeepsClientsWorking(t *testing.T) {
	t.Parallel()
	r, fw := newPublishedRepo(t)
	c, _ := r.newClient(deviceType, "")
	ctx := t.Context()
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	for range 5 { // five days, the server refreshing every 6 hours
		for range 4 {
			r.clock.Add(6 * time.Hour)
			if err := r.repo.Refresh(ctx); err != nil {
				t.Fatalf("repo.Refresh() = %v", err)
			}
		}
		dest := filepath.Join(t.TempDir(), "fw")
		if err := c.Download(ctx, "releases/acme/fw.swu", dest); err != nil {
			t.Fatalf("Download() at %s = %v", r.clock.Now(), err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, fw) {
			t.Fatalf("downloaded %q, want %q", got, fw)
		}
	}
}

func TestRotateTimestampKey(t *testing.T) {
	t.Parallel()
	r, _ := newPublishedRepo(t)
	c, dir := r.newClient(deviceType, "")
	ctx := t.Context()
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	if err := r.repo.Rotate(ctx, tuf.RoleTimestamp, tuf.RotateOptions{}); err != nil {
		t.Fatalf("Rotate(timestamp) = %v", err)
	}
	if err := c.Download(ctx, "releases/acme/fw.swu", filepath.Join(t.TempDir(), "fw")); err != nil {
		t.Fatalf("Download() after timestamp rotation = %v", err)
	}
	if v := rootVersion(t, filepath.Join(dir, tufclient.RootFile)); v != 2 {
		t.Errorf("trusted root version = %d, want 2", v)
	}
}

func TestRotateReleaserKey(t *testing.T) {
	t.Parallel()
	r, _ := newPublishedRepo(t)
	c, _ := r.newClient(deviceType, "")
	ctx := t.Context()
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	if err := r.repo.Rotate(ctx, releaser, tuf.RotateOptions{}); err != nil {
		t.Fatalf("Rotate(%s) = %v", releaser, err)
	}
	r.publish("releases/acme/fw2.swu", []byte("fw2"), "2.0.0", deviceType)
	for _, p := range []string{"releases/acme/fw.swu", "releases/acme/fw2.swu"} {
		if err := c.Download(ctx, p, filepath.Join(t.TempDir(), "fw")); err != nil {
			t.Errorf("Download(%s) after releaser rotation = %v", p, err)
		}
	}
}

func TestOfflineRoot(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pub1, k1, _ := ed25519.GenerateKey(rand.Reader)
	pub2, k2, _ := ed25519.GenerateKey(rand.Reader)
	r := newTestRepo(t, tuf.InitOptions{RootKeys: []ed25519.PublicKey{pub1, pub2}, RootThreshold: 2})
	if _, err := r.repo.Metadata(ctx, "timestamp.json"); !errors.Is(err, rampart.ErrNotFound) {
		t.Fatalf("Metadata(timestamp.json) before root import = %v, want not found", err)
	}
	unsigned, err := r.repo.UnsignedRoot(ctx)
	if err != nil {
		t.Fatalf("UnsignedRoot() = %v", err)
	}
	once, err := tuf.SignRoot(unsigned, k1)
	if err != nil {
		t.Fatalf("SignRoot(k1) = %v", err)
	}
	mustErrorIs(t, "ImportRoot(1 of 2 signatures)", r.repo.ImportRoot(ctx, once), rampart.ErrInvalid)
	twice, err := tuf.SignRoot(once, k2)
	if err != nil {
		t.Fatalf("SignRoot(k2) = %v", err)
	}
	if err := r.repo.ImportRoot(ctx, twice); err != nil {
		t.Fatalf("ImportRoot(2 of 2 signatures) = %v", err)
	}
	if err := r.repo.Delegate(ctx, releaser, []string{"releases/acme/*"}); err != nil {
		t.Fatalf("Delegate() = %v", err)
	}
	r.publish("releases/acme/fw.swu", []byte("fw"), "1.0.0", deviceType)
	c, dir := r.newClient(deviceType, "")
	if err := c.Download(ctx, "releases/acme/fw.swu", filepath.Join(t.TempDir(), "fw")); err != nil {
		t.Fatalf("Download() = %v", err)
	}

	// Rotating an online role under an offline root waits for the offline signatures.
	err = r.repo.Rotate(ctx, tuf.RoleTimestamp, tuf.RotateOptions{})
	mustErrorIs(t, "Rotate(timestamp) with offline root", err, tuf.ErrRootSignaturesNeeded)
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh() while root rotation pending = %v", err)
	}
	pending, err := r.repo.UnsignedRoot(ctx)
	if err != nil {
		t.Fatalf("UnsignedRoot() = %v", err)
	}
	for _, k := range []ed25519.PrivateKey{k1, k2} {
		if pending, err = tuf.SignRoot(pending, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.repo.ImportRoot(ctx, pending); err != nil {
		t.Fatalf("ImportRoot(rotated) = %v", err)
	}
	if err := c.Download(ctx, "releases/acme/fw.swu", filepath.Join(t.TempDir(), "fw")); err != nil {
		t.Fatalf("Download() after offline rotation = %v", err)
	}
	if v := rootVersion(t, filepath.Join(dir, tufclient.RootFile)); v != 2 {
		t.Errorf("trusted root version = %d, want 2", v)
	}
}

func stripSignatures(t testing.TB, doc []byte) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	m["signatures"] = json.RawMessage("[]")
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustCurrentVersion(t testing.TB, r *testRepo, role string) int64 {
	t.Helper()
	v, err := r.store.CurrentVersion(t.Context(), role)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func version(v int64) string { return strconv.FormatInt(v, 10) }

func rootVersion(t testing.TB, path string) int64 {
	t.Helper()
	root, err := (&metadata.Metadata[metadata.RootType]{}).FromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return root.Signed.Version
}
