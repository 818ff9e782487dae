// Package tuf keeps the TUF repository of one fleet: the root, targets, snapshot and timestamp
// roles and one delegated targets role per releaser, built and signed with go-tuf v2's
// metadata API (ed25519 keys, consistent snapshots).
//
// It is for the server side: creating the repository (with an online root for development or
// an offline root signed elsewhere), publishing release artifacts as targets with device
// metadata, re-signing timestamp and snapshot before they expire, rotating keys, and naming the
// documents a transport serves. It is not for devices (internal/agent/tufclient verifies),
// not for HTTP (a transport calls Metadata) and not for persistence (Store does that).
package tuf

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// ErrRootSignaturesNeeded means a new root version was prepared but the keys at hand do not
// reach the threshold of the old and the new root; it waits for offline signatures
// (UnsignedRoot, SignRoot, ImportRoot).
var ErrRootSignaturesNeeded = errors.New("root needs offline signatures")

// Limits on what callers can hand in.
const (
	maxRootBytes      = 512000 // go-tuf's client refuses larger roots
	maxTargetsPerCall = 1000
	maxPathLen        = 512
)

// Expiries says how long each role's metadata stays valid after it is signed.
type Expiries struct {
	Root      time.Duration
	Targets   time.Duration
	Delegated time.Duration
	Snapshot  time.Duration
	Timestamp time.Duration
}

// DefaultExpiries are the validity periods used for zero fields of Options.Expiries.
func DefaultExpiries() Expiries {
	const day = 24 * time.Hour
	return Expiries{Root: 365 * day, Targets: 90 * day, Delegated: 90 * day, Snapshot: 7 * day, Timestamp: day}
}

// Options configures a Repository.
type Options struct {
	Store Store
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// GenerateKey makes the keys of online roles; nil means crypto/rand.
	GenerateKey func() (ed25519.PrivateKey, error)
	// Expiries are the validity periods; zero fields take DefaultExpiries.
	Expiries Expiries
	// Margins say how close to its expiry Refresh re-signs a role; zero fields mean half the
	// role's validity (a 1-day timestamp is re-signed when less than 12 hours are left).
	Margins Expiries
	Log     *slog.Logger
}

// Repository is the TUF repository of one fleet. It is safe for concurrent use within one
// process; writers are serialised by a mutex, so one server process should own a repository.
type Repository struct {
	mu      sync.Mutex
	store   Store
	now     func() time.Time
	genKey  func() (ed25519.PrivateKey, error)
	exp     Expiries
	margins Expiries
	log     *slog.Logger
}

// New returns a Repository over opts.Store. It does not touch the store.
func New(opts Options) *Repository {
	r := &Repository{store: opts.Store, now: opts.Now, genKey: opts.GenerateKey, log: opts.Log}
	if r.now == nil {
		r.now = time.Now
	}
	if r.genKey == nil {
		r.genKey = func() (ed25519.PrivateKey, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		}
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	def := DefaultExpiries()
	pick := func(v, d time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return d
	}
	e := opts.Expiries
	r.exp = Expiries{
		Root:      pick(e.Root, def.Root),
		Targets:   pick(e.Targets, def.Targets),
		Delegated: pick(e.Delegated, def.Delegated),
		Snapshot:  pick(e.Snapshot, def.Snapshot),
		Timestamp: pick(e.Timestamp, def.Timestamp),
	}
	m := opts.Margins
	r.margins = Expiries{
		Root:      pick(m.Root, r.exp.Root/2),
		Targets:   pick(m.Targets, r.exp.Targets/2),
		Delegated: pick(m.Delegated, r.exp.Delegated/2),
		Snapshot:  pick(m.Snapshot, r.exp.Snapshot/2),
		Timestamp: pick(m.Timestamp, r.exp.Timestamp/2),
	}
	return r
}

// InitOptions chooses how the root of a new repository is kept.
type InitOptions struct {
	// RootKeys are the public keys of an offline root. When set, Init prepares root version 1
	// without signing it; the repository serves nothing until ImportRoot receives it signed
	// by RootThreshold of these keys.
	RootKeys []ed25519.PublicKey
	// RootThreshold is how many root keys must sign a root; 0 means 1.
	RootThreshold int
	// OnlineRootKeys is how many root keys to generate and keep in the store when RootKeys is
	// empty (development and tests); 0 means RootThreshold.
	OnlineRootKeys int
}

// Init creates the repository: keys for the online roles (timestamp, snapshot, targets) and
// root version 1. With online root keys it also publishes empty targets, snapshot and
// timestamp; with offline ones that happens in ImportRoot.
func (r *Repository) Init(ctx context.Context, opts InitOptions) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.store.CurrentVersion(ctx, RoleRoot); err == nil {
		return fmt.Errorf("init tuf repository: %w", rampart.ErrConflict)
	} else if !errors.Is(err, rampart.ErrNotFound) {
		return fmt.Errorf("init tuf repository: %w", err)
	}
	threshold := max(opts.RootThreshold, 1)
	rootPubs := opts.RootKeys
	var rootPrivs []ed25519.PrivateKey
	if len(rootPubs) == 0 {
		n := max(opts.OnlineRootKeys, threshold)
		for range n {
			k, err := r.genKey()
			if err != nil {
				return fmt.Errorf("init tuf repository: generate root key: %w", err)
			}
			rootPrivs = append(rootPrivs, k)
			rootPubs = append(rootPubs, k.Public().(ed25519.PublicKey))
		}
	}
	if len(uniqueKeys(rootPubs)) < threshold {
		return fmt.Errorf("init tuf repository: %d distinct root keys for threshold %d: %w",
			len(uniqueKeys(rootPubs)), threshold, rampart.ErrInvalid)
	}

	root := metadata.Root(r.nowUTC().Add(r.exp.Root))
	root.Signed.ConsistentSnapshot = true
	for _, pub := range rootPubs {
		if err := addRootKey(root, RoleRoot, pub); err != nil {
			return fmt.Errorf("init tuf repository: %w", err)
		}
	}
	root.Signed.Roles[RoleRoot].Threshold = threshold
	for _, role := range []string{RoleTimestamp, RoleSnapshot, RoleTargets} {
		k, err := r.genKey()
		if err != nil {
			return fmt.Errorf("init tuf repository: generate %s key: %w", role, err)
		}
		if err := addRootKey(root, role, k.Public().(ed25519.PublicKey)); err != nil {
			return fmt.Errorf("init tuf repository: %w", err)
		}
		if err := r.store.PutKeys(ctx, role, []ed25519.PrivateKey{k}); err != nil {
			return fmt.Errorf("init tuf repository: store %s key: %w", role, err)
		}
	}
	if rootPrivs == nil {
		raw, err := root.ToBytes(false)
		if err != nil {
			return fmt.Errorf("init tuf repository: %w", err)
		}
		if err := r.store.PutMetadata(ctx, pendingRoot, 1, raw); err != nil {
			return fmt.Errorf("init tuf repository: store unsigned root: %w", err)
		}
		r.log.InfoContext(ctx, "tuf root awaiting offline signatures", "version", 1, "threshold", threshold)
		return nil
	}
	if err := r.store.PutKeys(ctx, RoleRoot, rootPrivs); err != nil {
		return fmt.Errorf("init tuf repository: store root keys: %w", err)
	}
	if err := sign(root, rootPrivs); err != nil {
		return fmt.Errorf("init tuf repository: %w", err)
	}
	raw, err := root.ToBytes(false)
	if err != nil {
		return fmt.Errorf("init tuf repository: %w", err)
	}
	if err := r.importRoot(ctx, raw); err != nil {
		return fmt.Errorf("init tuf repository: %w", err)
	}
	return nil
}

// UnsignedRoot returns the root version waiting for offline signatures (after Init with
// RootKeys, or a Rotate the keys at hand could not sign). Signatures already made by online
// root keys are kept.
func (r *Repository) UnsignedRoot(ctx context.Context) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, err := r.store.CurrentVersion(ctx, pendingRoot)
	if err != nil {
		return nil, fmt.Errorf("unsigned root: %w", err)
	}
	cur, err := r.store.CurrentVersion(ctx, RoleRoot)
	if err != nil && !errors.Is(err, rampart.ErrNotFound) {
		return nil, fmt.Errorf("unsigned root: %w", err)
	}
	if v <= cur {
		return nil, fmt.Errorf("unsigned root: none pending: %w", rampart.ErrNotFound)
	}
	raw, err := r.store.Metadata(ctx, pendingRoot, v)
	if err != nil {
		return nil, fmt.Errorf("unsigned root: %w", err)
	}
	return raw, nil
}

// SignRoot adds key's signature to the root metadata rootJSON and returns the result. It runs
// wherever the offline key is kept (the CLI); signing twice with one key keeps one signature.
func SignRoot(rootJSON []byte, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign root: bad ed25519 private key: %w", rampart.ErrInvalid)
	}
	root, err := parseRoot(rootJSON)
	if err != nil {
		return nil, fmt.Errorf("sign root: %w", err)
	}
	id, err := keyID(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("sign root: %w", err)
	}
	root.Signatures = slices.DeleteFunc(root.Signatures, func(s metadata.Signature) bool { return s.KeyID == id })
	signer, err := signature.LoadED25519Signer(key)
	if err != nil {
		return nil, fmt.Errorf("sign root: %w", err)
	}
	if _, err := root.Sign(signer); err != nil {
		return nil, fmt.Errorf("sign root: %w", err)
	}
	out, err := root.ToBytes(false)
	if err != nil {
		return nil, fmt.Errorf("sign root: %w", err)
	}
	return out, nil
}

// ImportRoot makes signedRoot the current root. It must be the next version, signed by a
// threshold of its own root keys and (from version 2 on) of the current root's, unexpired, and
// name online keys the store holds. Version 1 also publishes the first targets, snapshot and
// timestamp; later versions re-sign whatever the new root's keys changed.
func (r *Repository) ImportRoot(ctx context.Context, signedRoot []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.importRootGuarded(ctx, signedRoot); err != nil {
		return fmt.Errorf("import root: %w", err)
	}
	return nil
}

// importRootGuarded is importRoot on outside input: go-tuf v2.4.2 panics when verifying
// against an ed25519 key of the wrong size, so a panic becomes ErrInvalid.
func (r *Repository) importRootGuarded(ctx context.Context, raw []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed root: %v: %w", p, rampart.ErrInvalid)
		}
	}()
	return r.importRoot(ctx, raw)
}

func (r *Repository) importRoot(ctx context.Context, raw []byte) error {
	if len(raw) > maxRootBytes {
		return fmt.Errorf("root is %d bytes: %w", len(raw), rampart.ErrTooLarge)
	}
	root, err := parseRoot(raw)
	if err != nil {
		return err
	}
	prev, err := loadLatest[metadata.RootType](ctx, r.store, RoleRoot)
	if err != nil && !errors.Is(err, rampart.ErrNotFound) {
		return err
	}
	want := int64(1)
	if prev != nil {
		want = prev.Signed.Version + 1
	}
	if root.Signed.Version != want {
		return fmt.Errorf("root version %d, want %d: %w", root.Signed.Version, want, rampart.ErrConflict)
	}
	if !root.Signed.ConsistentSnapshot {
		return fmt.Errorf("root without consistent snapshots: %w", rampart.ErrInvalid)
	}
	if root.Signed.IsExpired(r.now()) {
		return fmt.Errorf("root v%d expired at %s: %w", root.Signed.Version, root.Signed.Expires, rampart.ErrInvalid)
	}
	if prev != nil {
		if err := prev.VerifyDelegate(RoleRoot, root); err != nil {
			return fmt.Errorf("root v%d not signed by threshold of v%d keys: %w: %w", want, want-1, rampart.ErrInvalid, err)
		}
	}
	if err := root.VerifyDelegate(RoleRoot, root); err != nil {
		return fmt.Errorf("root v%d not signed by threshold of its own keys: %w: %w", want, rampart.ErrInvalid, err)
	}
	for _, role := range []string{RoleTimestamp, RoleSnapshot, RoleTargets} {
		keys, err := r.store.Keys(ctx, role)
		if err != nil {
			return fmt.Errorf("%s keys: %w", role, err)
		}
		held := heldKeys(root.Signed.Roles[role].KeyIDs, keys)
		if len(held) < root.Signed.Roles[role].Threshold {
			return fmt.Errorf("root v%d: server holds %d of %d %s keys needed: %w",
				want, len(held), root.Signed.Roles[role].Threshold, role, rampart.ErrInvalid)
		}
	}

	if err := r.store.PutMetadata(ctx, RoleRoot, root.Signed.Version, raw); err != nil {
		return fmt.Errorf("store root v%d: %w", want, err)
	}
	// Forget keys the new root no longer lists (kept until now so the old metadata could
	// still be signed while the new root waited for signatures).
	for _, role := range []string{RoleRoot, RoleTimestamp, RoleSnapshot, RoleTargets} {
		keys, err := r.store.Keys(ctx, role)
		if errors.Is(err, rampart.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s keys: %w", role, err)
		}
		if err := r.store.PutKeys(ctx, role, heldKeys(root.Signed.Roles[role].KeyIDs, keys)); err != nil {
			return fmt.Errorf("store %s keys: %w", role, err)
		}
	}
	r.log.InfoContext(ctx, "tuf root imported", "version", root.Signed.Version)

	if prev == nil {
		return r.bootstrap(ctx, root)
	}
	st, err := r.load(ctx)
	if err != nil {
		return err
	}
	var changed []string
	if !sameRole(prev.Signed.Roles[RoleTargets], root.Signed.Roles[RoleTargets]) {
		changed = append(changed, RoleTargets)
	}
	return r.publish(ctx, st, changed, true)
}

// bootstrap publishes version 1 of targets, snapshot and timestamp under the first root.
func (r *Repository) bootstrap(ctx context.Context, root *metadata.Metadata[metadata.RootType]) error {
	st := &state{
		root:      root,
		targets:   metadata.Targets(),
		delegated: map[string]*metadata.Metadata[metadata.TargetsType]{},
		snapshot:  metadata.Snapshot(),
		timestamp: metadata.Timestamp(),
	}
	st.targets.Signed.Version = 0
	st.snapshot.Signed.Version = 0
	st.snapshot.Signed.Meta = map[string]*metadata.MetaFiles{}
	st.timestamp.Signed.Version = 0
	return r.publish(ctx, st, []string{RoleTargets}, true)
}

// Delegate adds the delegated targets role name for a releaser, trusted for target paths
// matching paths (shell-style patterns such as "releases/acme/*"), with a new online key.
func (r *Repository) Delegate(ctx context.Context, name string, paths []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !validRoleName(name) {
		return fmt.Errorf("delegate %q: bad role name: %w", name, rampart.ErrInvalid)
	}
	if len(paths) == 0 {
		return fmt.Errorf("delegate %s: no paths: %w", name, rampart.ErrInvalid)
	}
	st, err := r.load(ctx)
	if err != nil {
		return fmt.Errorf("delegate %s: %w", name, err)
	}
	if _, ok := st.delegated[name]; ok {
		return fmt.Errorf("delegate %s: %w", name, rampart.ErrConflict)
	}
	k, err := r.genKey()
	if err != nil {
		return fmt.Errorf("delegate %s: generate key: %w", name, err)
	}
	key, err := metadata.KeyFromPublicKey(k.Public())
	if err != nil {
		return fmt.Errorf("delegate %s: %w", name, err)
	}
	id, err := key.ID()
	if err != nil {
		return fmt.Errorf("delegate %s: %w", name, err)
	}
	if st.targets.Signed.Delegations == nil {
		st.targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	st.targets.Signed.Delegations.Keys[id] = key
	st.targets.Signed.Delegations.Roles = append(st.targets.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: name, KeyIDs: []string{id}, Threshold: 1, Terminating: true, Paths: slices.Clone(paths),
	})
	d := metadata.Targets()
	d.Signed.Version = 0
	st.delegated[name] = d
	if err := r.store.PutKeys(ctx, name, []ed25519.PrivateKey{k}); err != nil {
		return fmt.Errorf("delegate %s: store key: %w", name, err)
	}
	if err := r.publish(ctx, st, []string{name, RoleTargets}, true); err != nil {
		return fmt.Errorf("delegate %s: %w", name, err)
	}
	return nil
}

// Keys of Target.Custom that Rampart sets and the agent reads.
const (
	CustomDeviceTypes = "device_types" // []string, required: device types the artifact is for
	CustomHWRevisions = "hw_revisions" // []string, optional: hardware revisions it is for
	CustomVersion     = "version"      // string: the release version
	CustomRelease     = "release"      // string: the release ID
)

// Target is an artifact published through the repository.
type Target struct {
	// Path is the target name clients ask for, e.g. "releases/acme/fw-1.2.0.swu".
	Path   string
	Length int64
	// SHA256 is the hex SHA-256 of the artifact bytes.
	SHA256 string
	// Custom is signed along with the hash; CustomDeviceTypes is required.
	Custom map[string]any
}

// AddTargets adds (or replaces) targets in the delegated role and publishes a new version of
// it signed by the releaser's key, then a new snapshot and timestamp. Every path must be one
// the role is delegated; nothing is written if any target is refused.
func (r *Repository) AddTargets(ctx context.Context, role string, targets []Target) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(targets) == 0 || len(targets) > maxTargetsPerCall {
		return fmt.Errorf("add %d targets to %s: want 1 to %d: %w", len(targets), role, maxTargetsPerCall, rampart.ErrInvalid)
	}
	st, err := r.load(ctx)
	if err != nil {
		return fmt.Errorf("add targets to %s: %w", role, err)
	}
	d, ok := st.delegated[role]
	if !ok {
		return fmt.Errorf("add targets to %s: no such delegated role: %w", role, rampart.ErrNotFound)
	}
	dr := delegatedRole(st.targets, role)
	files := make(map[string]*metadata.TargetFiles, len(targets))
	for _, t := range targets {
		tf, err := targetFile(t)
		if err != nil {
			return fmt.Errorf("add target %q to %s: %w", t.Path, role, err)
		}
		if ok, err := dr.IsDelegatedPath(t.Path); err != nil || !ok {
			return fmt.Errorf("add target %q to %s: path outside %v: %w", t.Path, role, dr.Paths, rampart.ErrInvalid)
		}
		files[t.Path] = tf
	}
	for p, tf := range files {
		d.Signed.Targets[p] = tf
	}
	if err := r.publish(ctx, st, []string{role}, true); err != nil {
		return fmt.Errorf("add targets to %s: %w", role, err)
	}
	r.log.InfoContext(ctx, "tuf targets published", "role", role, "count", len(files), "version", d.Signed.Version)
	return nil
}

func targetFile(t Target) (*metadata.TargetFiles, error) {
	if !validTargetPath(t.Path) {
		return nil, fmt.Errorf("bad path: %w", rampart.ErrInvalid)
	}
	if t.Length <= 0 {
		return nil, fmt.Errorf("length %d: %w", t.Length, rampart.ErrInvalid)
	}
	sum, err := hex.DecodeString(t.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("sha256 %q: %w", t.SHA256, rampart.ErrInvalid)
	}
	if !nonEmptyStrings(t.Custom[CustomDeviceTypes]) {
		return nil, fmt.Errorf("custom %s must be a non-empty list of names: %w", CustomDeviceTypes, rampart.ErrInvalid)
	}
	if v, ok := t.Custom[CustomHWRevisions]; ok && !nonEmptyStrings(v) {
		return nil, fmt.Errorf("custom %s must be a non-empty list of names: %w", CustomHWRevisions, rampart.ErrInvalid)
	}
	custom, err := jsonRaw(t.Custom)
	if err != nil {
		return nil, fmt.Errorf("custom: %w: %w", rampart.ErrInvalid, err)
	}
	return &metadata.TargetFiles{
		Length: t.Length,
		Hashes: metadata.Hashes{"sha256": sum},
		Custom: custom,
		Path:   t.Path,
	}, nil
}

// Refresh re-signs every online role whose metadata expires within its margin, with a new
// version: delegated roles and targets first, then snapshot, then timestamp. Call it
// periodically (well under the timestamp margin); it writes nothing when nothing is due.
// A root that is due is re-signed only when its keys are online; otherwise it is logged.
func (r *Repository) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load(ctx)
	if err != nil {
		return fmt.Errorf("refresh tuf metadata: %w", err)
	}
	now := r.now()
	due := func(expires time.Time, margin time.Duration) bool { return expires.Sub(now) < margin }

	if due(st.root.Signed.Expires, r.margins.Root) {
		if err := r.resignRoot(ctx, st); err != nil {
			return fmt.Errorf("refresh tuf metadata: %w", err)
		}
	}
	var changed []string
	for name, d := range st.delegated {
		if due(d.Signed.Expires, r.margins.Delegated) {
			changed = append(changed, name)
		}
	}
	if due(st.targets.Signed.Expires, r.margins.Targets) {
		changed = append(changed, RoleTargets)
	}
	snapshot := len(changed) > 0 || due(st.snapshot.Signed.Expires, r.margins.Snapshot)
	if !snapshot && !due(st.timestamp.Signed.Expires, r.margins.Timestamp) {
		return nil
	}
	if err := r.publish(ctx, st, changed, snapshot); err != nil {
		return fmt.Errorf("refresh tuf metadata: %w", err)
	}
	r.log.InfoContext(ctx, "tuf metadata re-signed", "roles", changed, "snapshot", snapshot,
		"timestamp_version", st.timestamp.Signed.Version)
	return nil
}

// resignRoot publishes the same root with a new version and expiry when its keys are online.
func (r *Repository) resignRoot(ctx context.Context, st *state) error {
	keys, err := r.store.Keys(ctx, RoleRoot)
	if err != nil && !errors.Is(err, rampart.ErrNotFound) {
		return err
	}
	if len(heldKeys(st.root.Signed.Roles[RoleRoot].KeyIDs, keys)) < st.root.Signed.Roles[RoleRoot].Threshold {
		r.log.WarnContext(ctx, "tuf root expires soon and its keys are offline",
			"version", st.root.Signed.Version, "expires", st.root.Signed.Expires)
		return nil
	}
	next, err := r.nextRoot(st.root)
	if err != nil {
		return err
	}
	if err := sign(next, keys); err != nil {
		return err
	}
	raw, err := next.ToBytes(false)
	if err != nil {
		return err
	}
	if err := r.importRoot(ctx, raw); err != nil {
		return err
	}
	st.root = next
	return nil
}

// RotateOptions says what replaces a role's keys.
type RotateOptions struct {
	// NewKeys are the role's new private keys; the store keeps them. Empty means one generated
	// key, except for root, where NewPublicKeys may be given instead.
	NewKeys []ed25519.PrivateKey
	// NewPublicKeys are new offline root keys (root only); their holders must sign the new
	// root, through RootSigners or the offline flow.
	NewPublicKeys []ed25519.PublicKey
	// Threshold is the role's new threshold; 0 keeps the current one.
	Threshold int
	// RootSigners are offline root private keys (old and new) the caller provides to sign the
	// new root a top-level rotation needs. They are used once and not stored.
	RootSigners []ed25519.PrivateKey
}

// Rotate replaces the keys of role: root, timestamp, snapshot, targets or a delegated role.
//
// A delegated role is re-delegated by targets (online) and takes effect at once. A top-level
// role needs a new root version signed by a threshold of the old and of the new root keys;
// when the online root keys and opts.RootSigners reach both thresholds the new root is
// imported at once and the affected metadata re-signed, otherwise the root waits for offline
// signatures (UnsignedRoot, SignRoot, ImportRoot) and Rotate returns ErrRootSignaturesNeeded.
// Until then the old keys keep signing.
func (r *Repository) Rotate(ctx context.Context, role string, opts RotateOptions) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load(ctx)
	if err != nil {
		return fmt.Errorf("rotate %s keys: %w", role, err)
	}
	if opts.Threshold < 0 || (len(opts.NewPublicKeys) > 0 && role != RoleRoot) {
		return fmt.Errorf("rotate %s keys: %w", role, rampart.ErrInvalid)
	}
	newPrivs := opts.NewKeys
	newPubs := slices.Clone(opts.NewPublicKeys)
	if len(newPrivs) == 0 && len(newPubs) == 0 {
		k, err := r.genKey()
		if err != nil {
			return fmt.Errorf("rotate %s keys: generate: %w", role, err)
		}
		newPrivs = []ed25519.PrivateKey{k}
	}
	for _, k := range newPrivs {
		newPubs = append(newPubs, k.Public().(ed25519.PublicKey))
	}
	newPubs = uniqueKeys(newPubs)

	if _, ok := st.delegated[role]; ok {
		if err := r.rotateDelegated(ctx, st, role, newPrivs, newPubs, opts.Threshold); err != nil {
			return fmt.Errorf("rotate %s keys: %w", role, err)
		}
		return nil
	}
	if !slices.Contains([]string{RoleRoot, RoleTimestamp, RoleSnapshot, RoleTargets}, role) {
		return fmt.Errorf("rotate %s keys: no such role: %w", role, rampart.ErrNotFound)
	}
	next, err := r.nextRoot(st.root)
	if err != nil {
		return fmt.Errorf("rotate %s keys: %w", role, err)
	}
	for _, id := range slices.Clone(next.Signed.Roles[role].KeyIDs) {
		if err := next.Signed.RevokeKey(id, role); err != nil {
			return fmt.Errorf("rotate %s keys: %w", role, err)
		}
	}
	for _, pub := range newPubs {
		if err := addRootKey(next, role, pub); err != nil {
			return fmt.Errorf("rotate %s keys: %w", role, err)
		}
	}
	if opts.Threshold > 0 {
		next.Signed.Roles[role].Threshold = opts.Threshold
	}
	if len(next.Signed.Roles[role].KeyIDs) < next.Signed.Roles[role].Threshold {
		return fmt.Errorf("rotate %s keys: %d keys for threshold %d: %w",
			role, len(next.Signed.Roles[role].KeyIDs), next.Signed.Roles[role].Threshold, rampart.ErrInvalid)
	}

	// Keep old and new private keys side by side until the new root is imported: the old
	// ones still sign for the current root, extra signatures are ignored by clients.
	if len(newPrivs) > 0 && role != RoleRoot {
		old, err := r.store.Keys(ctx, role)
		if err != nil {
			return fmt.Errorf("rotate %s keys: %w", role, err)
		}
		if err := r.store.PutKeys(ctx, role, append(old, newPrivs...)); err != nil {
			return fmt.Errorf("rotate %s keys: %w", role, err)
		}
	}
	onlineRoot, err := r.store.Keys(ctx, RoleRoot)
	if err != nil && !errors.Is(err, rampart.ErrNotFound) {
		return fmt.Errorf("rotate %s keys: %w", role, err)
	}
	signers := slices.Concat(onlineRoot, opts.RootSigners)
	if role == RoleRoot {
		signers = append(signers, newPrivs...)
	}
	if err := sign(next, uniquePrivKeys(signers)); err != nil {
		return fmt.Errorf("rotate %s keys: %w", role, err)
	}
	raw, err := next.ToBytes(false)
	if err != nil {
		return fmt.Errorf("rotate %s keys: %w", role, err)
	}
	if st.root.VerifyDelegate(RoleRoot, next) != nil || next.VerifyDelegate(RoleRoot, next) != nil {
		if err := r.store.PutMetadata(ctx, pendingRoot, next.Signed.Version, raw); err != nil {
			return fmt.Errorf("rotate %s keys: store unsigned root: %w", role, err)
		}
		return fmt.Errorf("rotate %s keys: root v%d: %w", role, next.Signed.Version, ErrRootSignaturesNeeded)
	}
	if role == RoleRoot && len(newPrivs) > 0 {
		if err := r.store.PutKeys(ctx, RoleRoot, append(onlineRoot, newPrivs...)); err != nil {
			return fmt.Errorf("rotate %s keys: %w", role, err)
		}
	}
	if err := r.importRoot(ctx, raw); err != nil {
		return fmt.Errorf("rotate %s keys: %w", role, err)
	}
	r.log.InfoContext(ctx, "tuf keys rotated", "role", role, "root_version", next.Signed.Version)
	return nil
}

func (r *Repository) rotateDelegated(ctx context.Context, st *state, role string, privs []ed25519.PrivateKey, pubs []ed25519.PublicKey, threshold int) error {
	if len(privs) == 0 {
		return fmt.Errorf("delegated roles sign online and need private keys: %w", rampart.ErrInvalid)
	}
	dr := delegatedRole(st.targets, role)
	if threshold == 0 {
		threshold = dr.Threshold
	}
	if len(pubs) < threshold {
		return fmt.Errorf("%d keys for threshold %d: %w", len(pubs), threshold, rampart.ErrInvalid)
	}
	for _, id := range slices.Clone(dr.KeyIDs) {
		if err := st.targets.Signed.RevokeKey(id, role); err != nil {
			return err
		}
	}
	for _, pub := range pubs {
		key, err := metadata.KeyFromPublicKey(pub)
		if err != nil {
			return err
		}
		if err := st.targets.Signed.AddKey(key, role); err != nil {
			return err
		}
	}
	delegatedRole(st.targets, role).Threshold = threshold
	if err := r.store.PutKeys(ctx, role, privs); err != nil {
		return err
	}
	return r.publish(ctx, st, []string{role, RoleTargets}, true)
}

// Metadata returns the document a client asks for by file name: "root.json" (newest root),
// "N.root.json", "timestamp.json", and consistent-snapshot names "N.snapshot.json",
// "N.targets.json" and "N.<delegated role>.json". Unknown names and versions wrap
// rampart.ErrNotFound, which a transport answers with 404 (the client relies on that to find
// the newest root).
func (r *Repository) Metadata(ctx context.Context, name string) ([]byte, error) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return nil, fmt.Errorf("metadata %q: %w", name, rampart.ErrNotFound)
	}
	var version int64
	role := base
	if prefix, rest, ok := strings.Cut(base, "."); ok {
		v, err := strconv.ParseInt(prefix, 10, 64)
		if err != nil || v < 1 || prefix != strconv.FormatInt(v, 10) {
			return nil, fmt.Errorf("metadata %q: %w", name, rampart.ErrNotFound)
		}
		version, role = v, rest
	}
	known := role == RoleRoot || role == RoleTargets || role == RoleSnapshot || role == RoleTimestamp || validRoleName(role)
	if !known || (role == RoleTimestamp && version != 0) {
		return nil, fmt.Errorf("metadata %q: %w", name, rampart.ErrNotFound)
	}
	if version == 0 {
		v, err := r.store.CurrentVersion(ctx, role)
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", name, err)
		}
		version = v
	}
	data, err := r.store.Metadata(ctx, role, version)
	if err != nil {
		return nil, fmt.Errorf("metadata %q: %w", name, err)
	}
	return data, nil
}

// TargetFileName is the name under which a client with consistent snapshots fetches the
// target path with the given hex SHA-256, relative to the targets URL: "dir/<sha256>.<base>".
// A transport serving artifacts maps it back to the blob.
func TargetFileName(path, sha256Hex string) string {
	dir, base, ok := cutLast(path, "/")
	if !ok {
		return sha256Hex + "." + path
	}
	return dir + "/" + sha256Hex + "." + base
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return "", s, false
}

// state is the current version of every role, parsed.
type state struct {
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	delegated map[string]*metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
}

func (r *Repository) load(ctx context.Context) (*state, error) {
	var (
		st  = &state{delegated: map[string]*metadata.Metadata[metadata.TargetsType]{}}
		err error
	)
	if st.root, err = loadLatest[metadata.RootType](ctx, r.store, RoleRoot); err != nil {
		return nil, fmt.Errorf("repository not initialised: %w", err)
	}
	if st.targets, err = loadLatest[metadata.TargetsType](ctx, r.store, RoleTargets); err != nil {
		return nil, err
	}
	if st.snapshot, err = loadLatest[metadata.SnapshotType](ctx, r.store, RoleSnapshot); err != nil {
		return nil, err
	}
	if st.timestamp, err = loadLatest[metadata.TimestampType](ctx, r.store, RoleTimestamp); err != nil {
		return nil, err
	}
	if st.targets.Signed.Delegations != nil {
		for _, d := range st.targets.Signed.Delegations.Roles {
			md, err := loadLatest[metadata.TargetsType](ctx, r.store, d.Name)
			if err != nil {
				return nil, err
			}
			st.delegated[d.Name] = md
		}
	}
	return st, nil
}

func loadLatest[T metadata.Roles](ctx context.Context, s Store, role string) (*metadata.Metadata[T], error) {
	v, err := s.CurrentVersion(ctx, role)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	raw, err := s.Metadata(ctx, role, v)
	if err != nil {
		return nil, fmt.Errorf("%s v%d: %w", role, v, err)
	}
	md, err := (&metadata.Metadata[T]{}).FromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("%s v%d: %w", role, v, err)
	}
	return md, nil
}

// publish signs and stores new versions of the targets roles in changed (delegated roles
// before targets), then, when snapshot is set or anything changed, a new snapshot, and always
// a new timestamp. Each document is verified against its delegator before it is stored.
func (r *Repository) publish(ctx context.Context, st *state, changed []string, snapshot bool) error {
	now := r.nowUTC()
	slices.SortStableFunc(changed, func(a, b string) int {
		return boolCmp(a == RoleTargets, b == RoleTargets)
	})
	for _, name := range changed {
		md, exp := st.delegated[name], r.exp.Delegated
		if name == RoleTargets {
			md, exp = st.targets, r.exp.Targets
		}
		md.Signed.Version++
		md.Signed.Expires = now.Add(exp)
		raw, err := r.signAs(ctx, st, name, md)
		if err != nil {
			return err
		}
		if err := r.store.PutMetadata(ctx, name, md.Signed.Version, raw); err != nil {
			return fmt.Errorf("store %s v%d: %w", name, md.Signed.Version, err)
		}
		st.snapshot.Signed.Meta[name+".json"] = metaFile(md.Signed.Version, raw)
	}
	if len(changed) > 0 || snapshot {
		st.snapshot.Signed.Version++
		st.snapshot.Signed.Expires = now.Add(r.exp.Snapshot)
		raw, err := r.signAs(ctx, st, RoleSnapshot, st.snapshot)
		if err != nil {
			return err
		}
		if err := r.store.PutMetadata(ctx, RoleSnapshot, st.snapshot.Signed.Version, raw); err != nil {
			return fmt.Errorf("store snapshot v%d: %w", st.snapshot.Signed.Version, err)
		}
		st.timestamp.Signed.Meta["snapshot.json"] = metaFile(st.snapshot.Signed.Version, raw)
	}
	st.timestamp.Signed.Version++
	st.timestamp.Signed.Expires = now.Add(r.exp.Timestamp)
	raw, err := r.signAs(ctx, st, RoleTimestamp, st.timestamp)
	if err != nil {
		return err
	}
	if err := r.store.PutMetadata(ctx, RoleTimestamp, st.timestamp.Signed.Version, raw); err != nil {
		return fmt.Errorf("store timestamp v%d: %w", st.timestamp.Signed.Version, err)
	}
	return nil
}

// signAs signs md with the stored keys of role, checks the delegator accepts it and returns
// its JSON.
func (r *Repository) signAs(ctx context.Context, st *state, role string, md any) ([]byte, error) {
	keys, err := r.store.Keys(ctx, role)
	if err != nil {
		return nil, fmt.Errorf("%s keys: %w", role, err)
	}
	var (
		raw       []byte
		delegator interface {
			VerifyDelegate(string, any) error
		} = st.root
	)
	switch m := md.(type) {
	case *metadata.Metadata[metadata.TargetsType]:
		err = sign(m, keys)
		if err == nil {
			raw, err = m.ToBytes(false)
		}
		if role != RoleTargets {
			delegator = st.targets
		}
	case *metadata.Metadata[metadata.SnapshotType]:
		err = sign(m, keys)
		if err == nil {
			raw, err = m.ToBytes(false)
		}
	case *metadata.Metadata[metadata.TimestampType]:
		err = sign(m, keys)
		if err == nil {
			raw, err = m.ToBytes(false)
		}
	default:
		err = fmt.Errorf("cannot sign %T", md)
	}
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", role, err)
	}
	if err := delegator.VerifyDelegate(role, md); err != nil {
		return nil, fmt.Errorf("sign %s: held keys do not meet its threshold: %w", role, err)
	}
	return raw, nil
}

// nextRoot copies root with the next version, a fresh expiry and no signatures.
func (r *Repository) nextRoot(root *metadata.Metadata[metadata.RootType]) (*metadata.Metadata[metadata.RootType], error) {
	raw, err := root.ToBytes(false)
	if err != nil {
		return nil, err
	}
	next, err := parseRoot(raw)
	if err != nil {
		return nil, err
	}
	next.ClearSignatures()
	next.Signed.Version++
	next.Signed.Expires = r.nowUTC().Add(r.exp.Root)
	return next, nil
}

func (r *Repository) nowUTC() time.Time { return r.now().UTC().Truncate(time.Second) }

func sign[T metadata.Roles](md *metadata.Metadata[T], keys []ed25519.PrivateKey) error {
	md.ClearSignatures()
	for _, k := range keys {
		signer, err := signature.LoadED25519Signer(k)
		if err != nil {
			return err
		}
		if _, err := md.Sign(signer); err != nil {
			return err
		}
	}
	return nil
}

func parseRoot(raw []byte) (*metadata.Metadata[metadata.RootType], error) {
	root, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("parse root: %w: %w", rampart.ErrInvalid, err)
	}
	for _, role := range []string{RoleRoot, RoleTimestamp, RoleSnapshot, RoleTargets} {
		if root.Signed.Roles[role] == nil {
			return nil, fmt.Errorf("parse root: no %s role: %w", role, rampart.ErrInvalid)
		}
	}
	return root, nil
}

func addRootKey(root *metadata.Metadata[metadata.RootType], role string, pub ed25519.PublicKey) error {
	key, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return err
	}
	return root.Signed.AddKey(key, role)
}

func keyID(pub ed25519.PublicKey) (string, error) {
	key, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return "", err
	}
	return key.ID()
}

// heldKeys returns the keys whose key IDs are in ids.
func heldKeys(ids []string, keys []ed25519.PrivateKey) []ed25519.PrivateKey {
	var out []ed25519.PrivateKey
	for _, k := range keys {
		id, err := keyID(k.Public().(ed25519.PublicKey))
		if err == nil && slices.Contains(ids, id) {
			out = append(out, k)
		}
	}
	return out
}

func uniqueKeys(keys []ed25519.PublicKey) []ed25519.PublicKey {
	var out []ed25519.PublicKey
	for _, k := range keys {
		if !slices.ContainsFunc(out, func(o ed25519.PublicKey) bool { return bytes.Equal(o, k) }) {
			out = append(out, k)
		}
	}
	return out
}

func uniquePrivKeys(keys []ed25519.PrivateKey) []ed25519.PrivateKey {
	var out []ed25519.PrivateKey
	for _, k := range keys {
		if !slices.ContainsFunc(out, func(o ed25519.PrivateKey) bool { return bytes.Equal(o, k) }) {
			out = append(out, k)
		}
	}
	return out
}

func sameRole(a, b *metadata.Role) bool {
	return a.Threshold == b.Threshold && slices.Equal(slices.Sorted(slices.Values(a.KeyIDs)), slices.Sorted(slices.Values(b.KeyIDs)))
}

func delegatedRole(targets *metadata.Metadata[metadata.TargetsType], name string) *metadata.DelegatedRole {
	for i := range targets.Signed.Delegations.Roles {
		if targets.Signed.Delegations.Roles[i].Name == name {
			return &targets.Signed.Delegations.Roles[i]
		}
	}
	return nil
}

func metaFile(version int64, raw []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(raw)
	return &metadata.MetaFiles{Version: version, Length: int64(len(raw)), Hashes: metadata.Hashes{"sha256": sum[:]}}
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	default:
		return -1
	}
}

var roleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// validRoleName reports whether name can be a delegated role: lowercase, digits and dashes,
// and not a top-level role (so "N.name.json" always means one document).
func validRoleName(name string) bool {
	switch name {
	case RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp:
		return false
	}
	return roleNameRE.MatchString(name)
}

func validTargetPath(p string) bool {
	if p == "" || len(p) > maxPathLen || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") ||
		strings.ContainsAny(p, "\\\x00") {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func nonEmptyStrings(v any) bool {
	switch l := v.(type) {
	case []string:
		return len(l) > 0 && !slices.Contains(l, "")
	case []any:
		for _, e := range l {
			if s, ok := e.(string); !ok || s == "" {
				return false
			}
		}
		return len(l) > 0
	}
	return false
}
