// Package s3 keeps blobs in an S3-compatible object store (AWS S3, MinIO, versitygw, Ceph
// RGW) through minio-go, and hands devices pre-signed URLs so the bytes need not flow
// through Rampart.
//
// Layout under Options.Prefix: an upload streams to incoming/<random> as a multipart upload
// of PartSize parts while it is hashed; once its SHA-256 is known and checked it is copied
// server-side to sha256/<digest> and the incoming object deleted, so a blob key never holds
// partial content. What a crash leaves (an incoming object or an unfinished multipart
// upload) is removed by Sweep.
//
// It is not for choosing or configuring the bucket's lifecycle, versioning or encryption;
// those belong to whoever runs the object store.
package s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/blob"
)

// PartSize is the size of one part of a multipart upload. minio-go buffers one part per
// Put in progress, so this bounds a Put's memory (a 16 MiB buffer) and, with S3's limit of
// 10,000 parts, the largest blob (about 160 GB).
const PartSize = 16 << 20

// cleanupTimeout bounds the removal of a failed upload's leftovers, which runs even when
// the Put's own context was cancelled.
const cleanupTimeout = 30 * time.Second

// Options says which bucket to use and how to reach it.
type Options struct {
	Endpoint  string // host:port, without scheme
	Bucket    string // created if missing
	AccessKey string
	SecretKey string
	UseSSL    bool
	Region    string // "" lets minio-go ask the server
	Prefix    string // key prefix for everything this store writes, e.g. "rampart/"; may be ""
}

// LogValue keeps the secret key out of logs.
func (o Options) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", o.Endpoint),
		slog.String("bucket", o.Bucket),
		slog.String("access_key", o.AccessKey),
		slog.String("secret_key", "REDACTED"),
		slog.Bool("ssl", o.UseSSL),
		slog.String("region", o.Region),
		slog.String("prefix", o.Prefix),
	)
}

// Store is a blob.Store on an S3 bucket.
type Store struct {
	c        *minio.Client
	bucket   string
	incoming string // key prefix of uploads being written
	blobs    string // key prefix of blobs: <blobs><digest>
}

var _ blob.Store = (*Store)(nil)

// Open connects to the object store and creates the bucket if it is missing.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Endpoint == "" || o.Bucket == "" {
		return nil, fmt.Errorf("open s3 store: endpoint and bucket are required: %w", rampart.ErrInvalid)
	}
	prefix := o.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if strings.HasPrefix(prefix, "/") {
		return nil, fmt.Errorf("open s3 store: prefix %q starts with /: %w", o.Prefix, rampart.ErrInvalid)
	}
	c, err := minio.New(o.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""),
		Secure: o.UseSSL,
		Region: o.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("open s3 store %s: %w", o.Endpoint, err)
	}
	exists, err := c.BucketExists(ctx, o.Bucket)
	if err != nil {
		return nil, fmt.Errorf("open s3 store %s/%s: %w", o.Endpoint, o.Bucket, err)
	}
	if !exists {
		err := c.MakeBucket(ctx, o.Bucket, minio.MakeBucketOptions{Region: o.Region})
		if code := minio.ToErrorResponse(err).Code; err != nil && code != "BucketAlreadyOwnedByYou" {
			return nil, fmt.Errorf("open s3 store: create bucket %s: %w", o.Bucket, err)
		}
	}
	return &Store{c: c, bucket: o.Bucket, incoming: prefix + "incoming/", blobs: prefix + "sha256/"}, nil
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, r io.Reader, want blob.Expect) (blob.Info, error) {
	v, err := blob.NewVerifier(r, want)
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	tmp := s.incoming + hex.EncodeToString(rnd[:])
	info, err := s.put(ctx, v, tmp)
	// Whatever happened, the incoming object must go: on success it was copied, on failure
	// it is a half-written upload. minio-go aborts its own multipart upload on error; should
	// that abort fail, RemoveIncompleteUpload below tries again, and Sweep catches the rest.
	// Both run on a context of their own because the Put's may be what was cancelled.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if rerr := s.c.RemoveObject(cctx, s.bucket, tmp, minio.RemoveObjectOptions{}); rerr != nil && !isNotFound(rerr) && err == nil {
		err = fmt.Errorf("put blob %s: remove %s: %w", info.Digest, tmp, rerr)
	}
	if err != nil {
		_ = s.c.RemoveIncompleteUpload(cctx, s.bucket, tmp) // Sweep retries what this misses
		return blob.Info{}, err
	}
	return info, nil
}

func (s *Store) put(ctx context.Context, v *blob.Verifier, tmp string) (blob.Info, error) {
	_, err := s.c.PutObject(ctx, s.bucket, tmp, v, -1, minio.PutObjectOptions{
		PartSize:    PartSize,
		ContentType: "application/octet-stream",
	})
	if verr := v.Err(); verr != nil {
		err = verr // minio-go may not wrap the reader's error; the kind matters to callers
	} else if cerr := ctx.Err(); cerr != nil {
		err = cerr
	}
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	digest, size, err := v.Sum()
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	key := s.blobs + digest
	if info, err := s.Stat(ctx, digest); err == nil {
		return info, nil // already stored: content-addressed, so identical
	} else if !errors.Is(err, rampart.ErrNotFound) {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	// ComposeObject is CopyObject up to 5 GiB and a multipart copy beyond, both server-side.
	_, err = s.c.ComposeObject(ctx,
		minio.CopyDestOptions{Bucket: s.bucket, Object: key},
		minio.CopySrcOptions{Bucket: s.bucket, Object: tmp})
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: copy to %s: %w", digest, key, err)
	}
	info, err := s.Stat(ctx, digest)
	if err == nil && info.Size != size {
		err = fmt.Errorf("stored blob %s has %d bytes, wrote %d", digest, info.Size, size)
	}
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	return info, nil
}

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, digest string) (blob.Info, error) {
	if err := blob.CheckDigest(digest); err != nil {
		return blob.Info{}, fmt.Errorf("stat blob: %w", err)
	}
	oi, err := s.c.StatObject(ctx, s.bucket, s.blobs+digest, minio.StatObjectOptions{})
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat blob %s: %w", digest, kind(err))
	}
	return blob.Info{Digest: digest, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Open implements blob.Store. The object reads lazily with ranged GETs, so Seek before
// Read costs nothing and http.ServeContent's Range requests fetch only what they send.
func (s *Store) Open(ctx context.Context, digest string) (blob.Object, error) {
	if err := blob.CheckDigest(digest); err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	o, err := s.c.GetObject(ctx, s.bucket, s.blobs+digest, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", digest, kind(err))
	}
	oi, err := o.Stat()
	if err != nil {
		o.Close()
		return nil, fmt.Errorf("open blob %s: %w", digest, kind(err))
	}
	return &object{Object: o, info: blob.Info{Digest: digest, Size: oi.Size, ModTime: oi.LastModified}}, nil
}

type object struct {
	*minio.Object
	info blob.Info
}

func (o *object) Info() blob.Info { return o.info }

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, digest string) error {
	if _, err := s.Stat(ctx, digest); err != nil {
		return fmt.Errorf("delete: %w", err) // S3 deletes a missing key without complaint
	}
	if err := s.c.RemoveObject(ctx, s.bucket, s.blobs+digest, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, kind(err))
	}
	return nil
}

// Walk implements blob.Store.
func (s *Store) Walk(ctx context.Context, fn func(blob.Info) error) error {
	ctx, cancel := context.WithCancel(ctx) // stops the listing if fn fails
	defer cancel()
	for oi := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.blobs, Recursive: true}) {
		if oi.Err != nil {
			return fmt.Errorf("walk blobs: %w", oi.Err)
		}
		digest := strings.TrimPrefix(oi.Key, s.blobs)
		if blob.CheckDigest(digest) != nil {
			continue // not put there by Put
		}
		if err := fn(blob.Info{Digest: digest, Size: oi.Size, ModTime: oi.LastModified}); err != nil {
			return fmt.Errorf("walk blobs: %w", err)
		}
	}
	return ctx.Err()
}

// PresignGet implements blob.Store. The URL is signed for a GET, so it honours Range and
// conditional headers the way the object store does.
func (s *Store) PresignGet(ctx context.Context, digest string, ttl time.Duration) (string, bool, error) {
	if _, err := s.Stat(ctx, digest); err != nil {
		return "", false, fmt.Errorf("presign: %w", err)
	}
	u, err := s.c.PresignedGetObject(ctx, s.bucket, s.blobs+digest, ttl, nil)
	if err != nil {
		return "", false, fmt.Errorf("presign blob %s: %w", digest, err)
	}
	return u.String(), true, nil
}

// Sweep implements blob.Store: it removes incoming objects last written before olderThan
// and aborts multipart uploads (of uploads and of copies) started before it.
func (s *Store) Sweep(ctx context.Context, olderThan time.Time) (int, error) {
	removed := 0
	for oi := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.incoming, Recursive: true}) {
		if oi.Err != nil {
			return removed, fmt.Errorf("sweep incoming blobs: %w", oi.Err)
		}
		if !oi.LastModified.Before(olderThan) {
			continue
		}
		if err := s.c.RemoveObject(ctx, s.bucket, oi.Key, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
			return removed, fmt.Errorf("sweep incoming blob %s: %w", oi.Key, err)
		}
		removed++
	}
	for _, prefix := range []string{s.incoming, s.blobs} {
		for u := range s.c.ListIncompleteUploads(ctx, s.bucket, prefix, true) {
			if u.Err != nil {
				return removed, fmt.Errorf("sweep unfinished uploads: %w", u.Err)
			}
			if !u.Initiated.Before(olderThan) {
				continue
			}
			if err := s.c.RemoveIncompleteUpload(ctx, s.bucket, u.Key); err != nil && !isNotFound(err) {
				return removed, fmt.Errorf("sweep unfinished upload %s: %w", u.Key, err)
			}
			removed++
		}
	}
	return removed, nil
}

func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusNotFound || r.Code == "NoSuchKey" || r.Code == "NoSuchUpload"
}

// kind maps a missing object to rampart.ErrNotFound, keeping the object store's message.
func kind(err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%w (%v)", rampart.ErrNotFound, err)
	}
	return err
}
