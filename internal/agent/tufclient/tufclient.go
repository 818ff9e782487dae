// Package tufclient is the device side of Rampart's TUF repository: it refreshes the fleet's
// signed metadata with go-tuf v2's updater, checks that a target is meant for this device, and
// downloads targets so that only verified bytes ever reach their destination.
//
// It is for the agent. It is not a general TUF client (it assumes Rampart's layout: consistent
// snapshots, device metadata in each target's custom field) and it installs nothing; the
// installer gets a verified file. It imports no server package and cross-compiles for every
// agent architecture.
package tufclient

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// Error classes a caller reports to the server as the kind of attack or fault detected. Every
// error of Refresh, Target and Download that comes from verification wraps one of them.
var (
	// ErrBadSignature: metadata not signed by a threshold of trusted keys (arbitrary
	// software, key compromise below threshold).
	ErrBadSignature = errors.New("metadata signature check failed")
	// ErrBadVersion: metadata older than trusted, or not the version its parent names
	// (rollback, mix-and-match).
	ErrBadVersion = errors.New("metadata version check failed")
	// ErrExpired: the newest metadata the repository offers has expired (freeze).
	ErrExpired = errors.New("metadata expired")
	// ErrMismatch: metadata or target bytes do not match the signed length and hashes
	// (arbitrary software, mix-and-match).
	ErrMismatch = errors.New("length or hash mismatch")
	// ErrTooLarge: a response exceeded the signed or configured length (endless data).
	ErrTooLarge = errors.New("download exceeds signed length")
	// ErrTargetNotFound: no trusted targets metadata lists the path.
	ErrTargetNotFound = errors.New("target not in signed metadata")
	// ErrWrongDevice: the target is signed but not for this device type or hardware revision.
	ErrWrongDevice = errors.New("target is not for this device")
)

// RootFile is the name of the trusted root in Options.StateDir, written at enrollment and
// replaced by the updater on each verified root rotation.
const RootFile = "root.json"

// Options configures a Client.
type Options struct {
	// MetadataURL is the base URL of the fleet's TUF metadata ("…/tuf/metadata").
	MetadataURL string
	// TargetsURL is the base URL of target files.
	TargetsURL string
	// StateDir holds the trusted metadata; RootFile must be there before New.
	StateDir string
	// HTTPClient makes every request. It must have a Timeout: go-tuf's own fetcher would use
	// http.DefaultClient, which never gives up on a slow server.
	HTTPClient *http.Client
	// DeviceType and HWRevision identify this device; targets must list them.
	DeviceType string
	HWRevision string
	// Now is the clock used for expiry checks; nil means time.Now.
	Now func() time.Time
}

// Client fetches and verifies targets for one device. Its methods are safe for concurrent use
// but run one at a time.
type Client struct {
	mu   sync.Mutex
	opts Options
}

// TargetInfo is a verified target and the device metadata signed with it.
type TargetInfo struct {
	Path        string
	Length      int64
	SHA256      string // hex
	DeviceTypes []string
	HWRevisions []string // empty means any revision
	Version     string
	Release     string
	// Custom is the whole signed custom object, for fields this package does not know.
	Custom json.RawMessage

	hashes     metadata.Hashes
	consistent bool // fetched by its hash-prefixed name
}

// New checks opts and the provisioned root and returns a Client. It does no I/O beyond
// reading the root.
func New(opts Options) (*Client, error) {
	switch {
	case opts.MetadataURL == "" || opts.TargetsURL == "":
		return nil, errors.New("new tuf client: metadata and targets URLs are required")
	case opts.StateDir == "":
		return nil, errors.New("new tuf client: state directory is required")
	case opts.HTTPClient == nil || opts.HTTPClient.Timeout <= 0:
		return nil, errors.New("new tuf client: an HTTP client with a timeout is required")
	case opts.DeviceType == "":
		return nil, errors.New("new tuf client: device type is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	root, err := os.ReadFile(filepath.Join(opts.StateDir, RootFile))
	if err != nil {
		return nil, fmt.Errorf("new tuf client: trusted root: %w", err)
	}
	if err := checkRoot(root); err != nil {
		return nil, fmt.Errorf("new tuf client: trusted root: %w", err)
	}
	return &Client{opts: opts}, nil
}

// guard runs fn and turns a panic inside go-tuf into an error: go-tuf v2.4.2 panics
// (crypto/ed25519: bad public key length) when metadata lists an ed25519 key of the wrong
// size, which FuzzTrustedRoot found.
func guard(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: malformed metadata: %v", ErrBadSignature, p)
		}
	}()
	return fn()
}

// checkRoot parses a trusted root the way the updater will and checks it is signed by itself.
func checkRoot(data []byte) error {
	return guard(func() error { return checkRootUnguarded(data) })
}

func checkRootUnguarded(data []byte) error {
	root, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(data)
	if err != nil {
		return classify(err)
	}
	if root.Signed.Type != metadata.ROOT {
		return fmt.Errorf("type %q is not root: %w", root.Signed.Type, ErrBadSignature)
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return classify(err)
	}
	return nil
}

// Refresh downloads and verifies root, timestamp, snapshot and top-level targets, and keeps
// them in StateDir. On error the trusted metadata stays as it was.
func (c *Client) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.refresh(ctx); err != nil {
		return fmt.Errorf("refresh tuf metadata: %w", err)
	}
	return nil
}

// Target refreshes the metadata, finds path (following delegations) and checks that it is for
// this device.
func (c *Client) Target(ctx context.Context, path string) (TargetInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	info, err := c.target(ctx, path)
	if err != nil {
		return TargetInfo{}, fmt.Errorf("tuf target %s: %w", path, err)
	}
	return info, nil
}

// Download verifies path like Target, then streams it to a partial file beside destFile,
// reading at most its signed length and checking every signed hash, and renames it to
// destFile only if all checks pass. destFile is never left holding unverified bytes.
//
// A download cut short (a dropped connection, a power loss) leaves the partial file, and the
// next Download of the same target to the same destFile fetches only the rest with an HTTP
// Range request; a server that answers with the whole file is read from the start.
func (c *Client) Download(ctx context.Context, path, destFile string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	info, err := c.target(ctx, path)
	if err != nil {
		return fmt.Errorf("download %s: %w", path, err)
	}
	return c.fetch(ctx, info, destFile)
}

// Fetch downloads a target that Target returned, as Download does, without refreshing the
// metadata again.
func (c *Client) Fetch(ctx context.Context, info TargetInfo, destFile string) error {
	if len(info.hashes) == 0 {
		return fmt.Errorf("download %s: not a target returned by Target: %w", info.Path, ErrMismatch)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetch(ctx, info, destFile)
}

func (c *Client) fetch(ctx context.Context, info TargetInfo, destFile string) error {
	name := info.Path
	if info.consistent {
		name = consistentName(info.Path, info.SHA256)
	}
	u, err := url.JoinPath(c.opts.TargetsURL, strings.Split(name, "/")...)
	if err != nil {
		return fmt.Errorf("download %s: %w", info.Path, err)
	}
	if err := c.fetchTo(ctx, u, info, destFile); err != nil {
		return fmt.Errorf("download %s: %w", info.Path, err)
	}
	return nil
}

func (c *Client) target(ctx context.Context, path string) (TargetInfo, error) {
	up, err := c.refresh(ctx)
	if err != nil {
		return TargetInfo{}, err
	}
	var tf *metadata.TargetFiles
	err = guard(func() (err error) {
		tf, err = up.GetTargetInfo(path)
		return err
	})
	if err != nil {
		if strings.HasSuffix(err.Error(), "not found") && !isTUFError(err) {
			return TargetInfo{}, ErrTargetNotFound
		}
		return TargetInfo{}, classify(err)
	}
	info, err := targetInfo(path, tf)
	if err != nil {
		return TargetInfo{}, err
	}
	if !slices.Contains(info.DeviceTypes, c.opts.DeviceType) {
		return TargetInfo{}, fmt.Errorf("signed for %v, this is %q: %w", info.DeviceTypes, c.opts.DeviceType, ErrWrongDevice)
	}
	if len(info.HWRevisions) > 0 && !slices.Contains(info.HWRevisions, c.opts.HWRevision) {
		return TargetInfo{}, fmt.Errorf("signed for hardware %v, this is %q: %w", info.HWRevisions, c.opts.HWRevision, ErrWrongDevice)
	}
	info.consistent = up.GetTrustedMetadataSet().Root.Signed.ConsistentSnapshot
	return info, nil
}

// refresh builds a new updater (go-tuf allows one Refresh per updater) whose fetcher is bound
// to ctx, and refreshes the top-level metadata.
func (c *Client) refresh(ctx context.Context) (*updater.Updater, error) {
	root, err := os.ReadFile(filepath.Join(c.opts.StateDir, RootFile))
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	cfg, err := config.New(c.opts.MetadataURL, root)
	if err != nil {
		return nil, err
	}
	cfg.LocalMetadataDir = c.opts.StateDir
	cfg.LocalTargetsDir = c.opts.StateDir // unused: Download writes targets itself
	cfg.RemoteTargetsURL = c.opts.TargetsURL
	cfg.Fetcher = &fetcher{ctx: ctx, client: c.opts.HTTPClient}
	var up *updater.Updater
	err = guard(func() (err error) {
		if up, err = updater.New(cfg); err != nil {
			return err
		}
		up.UnsafeSetRefTime(c.opts.Now().UTC())
		return up.Refresh()
	})
	if err != nil {
		return nil, classify(err)
	}
	return up, nil
}

// fetchTo downloads u into dest through a partial file beside it (see partName) and
// renames it to dest once every signed hash matches. An interrupted download leaves the
// partial file, and the next call asks only for the rest (HTTP Range); bytes that fail
// verification are deleted.
func (c *Client) fetchTo(ctx context.Context, u string, info TargetInfo, dest string) error {
	part := partName(dest, info)
	removeStaleParts(dest, part)
	resumed, err := c.fetchPart(ctx, u, info, part)
	if resumed && errors.Is(err, ErrMismatch) {
		// The bytes kept from an earlier attempt were bad (a power loss can leave garbage
		// at the end of a file that was never fsynced): start over once from nothing.
		os.Remove(part)
		_, err = c.fetchPart(ctx, u, info, part)
	}
	if err != nil {
		if errors.Is(err, ErrMismatch) || errors.Is(err, ErrTooLarge) {
			os.Remove(part)
		}
		return err
	}
	if err := os.Rename(part, dest); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dest))
}

// partName is the partial download of info for dest: hidden, beside dest, and named by the
// target's digest so that bytes of one target are never continued with those of another.
func partName(dest string, info TargetInfo) string {
	id := info.SHA256
	if id == "" {
		for alg, h := range info.hashes {
			id = alg + "-" + hex.EncodeToString(h)
			break
		}
	}
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+"."+id+".part")
}

// removeStaleParts deletes partial downloads for dest of targets other than keep's.
func removeStaleParts(dest, keep string) {
	dir := filepath.Dir(dest)
	entries, _ := os.ReadDir(dir)
	prefix := "." + filepath.Base(dest) + "."
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), prefix) && strings.HasSuffix(e.Name(), ".part") && p != keep {
			os.Remove(p)
		}
	}
}

// fetchPart completes the partial file part and checks it against info. resumed reports
// whether bytes from an earlier attempt were kept.
//
// The continuation is a plain Range request without If-Range: the URL names the content by
// its digest (consistent snapshots), so its bytes never change, and the whole file is
// verified at the end anyway. An If-Range validator would also defeat resumption behind a
// redirect to object storage, whose ETag is not the SHA-256.
func (c *Client) fetchPart(ctx context.Context, u string, info TargetInfo, part string) (resumed bool, err error) {
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	have := min(fi.Size(), info.Length)
	hs, err := newHashers(info)
	if err != nil {
		return false, err
	}
	if have > 0 {
		if have, err = io.Copy(hs, io.LimitReader(f, have)); err != nil {
			return false, err
		}
	}
	resumed = have > 0
	if have < info.Length {
		var restarted bool
		have, restarted, err = c.getRange(ctx, u, info.Length, have, f, hs)
		if restarted {
			resumed = false
		}
		if err != nil {
			return resumed, err
		}
	}
	if err := f.Truncate(have); err != nil {
		return resumed, err
	}
	if have != info.Length {
		return resumed, fmt.Errorf("got %d bytes, signed length is %d: %w", have, info.Length, ErrMismatch)
	}
	if err := hs.check(info); err != nil {
		return resumed, err
	}
	return resumed, f.Sync()
}

// getRange fetches u from byte have on into f (from the start if have is 0, or if the server
// answers a range request with the whole file) and returns how many bytes of the target f
// holds now, and whether it started over.
func (c *Client) getRange(ctx context.Context, u string, length, have int64, f *os.File, hs *hashers) (int64, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return have, false, err
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return have, false, err
	}
	defer resp.Body.Close()
	restarted := false
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		if start, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || start != have {
			return have, false, fmt.Errorf("GET %s: asked for bytes from %d, got range %q", u, have, resp.Header.Get("Content-Range"))
		}
	case resp.StatusCode == http.StatusOK:
		// The whole file (a first request, or a server or proxy that ignores Range).
		restarted = have > 0
		have = 0
		hs.reset()
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		// The kept bytes do not belong to this file: drop them, so the next attempt starts over.
		return 0, true, errors.Join(fmt.Errorf("GET %s: range from byte %d not satisfiable", u, have), f.Truncate(0))
	default:
		return have, false, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	if resp.ContentLength > length-have {
		return have, restarted, fmt.Errorf("server announces %d bytes from byte %d, signed length is %d: %w", resp.ContentLength, have, length, ErrTooLarge)
	}
	if have == 0 {
		if err := f.Truncate(0); err != nil {
			return have, restarted, err
		}
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return have, restarted, err
	}
	n, err := io.Copy(io.MultiWriter(hs, f), io.LimitReader(resp.Body, length-have+1))
	have += n
	if err != nil {
		return have, restarted, err
	}
	if have > length {
		return have, restarted, fmt.Errorf("more than the signed %d bytes: %w", length, ErrTooLarge)
	}
	return have, restarted, nil
}

// rangeStart parses the first byte of a Content-Range header "bytes first-last/size".
func rangeStart(h string) (int64, bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil && n >= 0
}

// hashers computes every signed hash of a target at once.
type hashers struct {
	algs []string
	hs   []hash.Hash
}

func newHashers(info TargetInfo) (*hashers, error) {
	h := &hashers{}
	for alg := range info.hashes {
		switch alg {
		case "sha256":
			h.hs = append(h.hs, sha256.New())
		case "sha512":
			h.hs = append(h.hs, sha512.New())
		default:
			return nil, fmt.Errorf("unsupported hash %q: %w", alg, ErrMismatch)
		}
		h.algs = append(h.algs, alg)
	}
	return h, nil
}

func (h *hashers) Write(p []byte) (int, error) {
	for _, x := range h.hs {
		x.Write(p)
	}
	return len(p), nil
}

func (h *hashers) reset() {
	for _, x := range h.hs {
		x.Reset()
	}
}

func (h *hashers) check(info TargetInfo) error {
	for i, alg := range h.algs {
		if got := h.hs[i].Sum(nil); !slices.Equal(got, []byte(info.hashes[alg])) {
			return fmt.Errorf("%s %x, signed %x: %w", alg, got, []byte(info.hashes[alg]), ErrMismatch)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// custom is the part of a target's custom object Rampart's repository signs.
type custom struct {
	DeviceTypes []string `json:"device_types"`
	HWRevisions []string `json:"hw_revisions"`
	Version     string   `json:"version"`
	Release     string   `json:"release"`
}

func targetInfo(path string, tf *metadata.TargetFiles) (TargetInfo, error) {
	info := TargetInfo{Path: path, Length: tf.Length, hashes: tf.Hashes}
	if len(tf.Hashes) == 0 {
		return TargetInfo{}, fmt.Errorf("no signed hashes: %w", ErrMismatch)
	}
	if h, ok := tf.Hashes["sha256"]; ok {
		info.SHA256 = hex.EncodeToString(h)
	}
	if tf.Custom == nil {
		return TargetInfo{}, fmt.Errorf("no device metadata: %w", ErrWrongDevice)
	}
	info.Custom = slices.Clone(*tf.Custom)
	var cu custom
	if err := json.Unmarshal(info.Custom, &cu); err != nil {
		return TargetInfo{}, fmt.Errorf("device metadata: %w: %w", ErrWrongDevice, err)
	}
	info.DeviceTypes, info.HWRevisions, info.Version, info.Release = cu.DeviceTypes, cu.HWRevisions, cu.Version, cu.Release
	return info, nil
}

// consistentName is the hash-prefixed name of a target under consistent snapshots, the same
// one go-tuf's DownloadTarget would ask for: "dir/<sha256>.<base>".
func consistentName(path, sha256Hex string) string {
	if i := strings.LastIndex(path, "/"); i >= 0 {
		return path[:i+1] + sha256Hex + "." + path[i+1:]
	}
	return sha256Hex + "." + path
}

// classify wraps a go-tuf error with this package's class for it.
func classify(err error) error {
	var class error
	switch {
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		class = ErrBadSignature
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		class = ErrExpired
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		class = ErrBadVersion
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		class = ErrMismatch
	case errors.Is(err, &metadata.ErrDownloadLengthMismatch{}):
		class = ErrTooLarge
	case errors.Is(err, &metadata.ErrValue{}), errors.Is(err, &metadata.ErrType{}), errors.Is(err, &metadata.ErrRepository{}):
		// malformed, mistyped or unverifiable metadata (e.g. a signature by an unknown key)
		class = ErrBadSignature
	default:
		return err
	}
	return fmt.Errorf("%w: %w", class, err)
}

func isTUFError(err error) bool {
	return errors.Is(err, &metadata.ErrRepository{}) || errors.Is(err, &metadata.ErrDownload{}) ||
		errors.Is(err, &metadata.ErrValue{}) || errors.Is(err, &metadata.ErrType{})
}

// fetcher is go-tuf's Fetcher over our HTTP client. go-tuf's interface takes no context, so
// each fetcher lives for one Client call and carries that call's context.
type fetcher struct {
	ctx    context.Context
	client *http.Client
}

// DownloadFile fetches urlPath, reading at most maxLength bytes.
func (f *fetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, urlPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: urlPath}
	}
	if resp.ContentLength > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: length %d is larger than %d", urlPath, resp.ContentLength, maxLength)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxLength+1))
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: err.Error()}
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: more than %d bytes", urlPath, maxLength)}
	}
	return data, nil
}
