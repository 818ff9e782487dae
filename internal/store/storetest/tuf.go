package storetest

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
	"github.com/rampart-iot/rampart/internal/tuf"
)

func testTUF(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	ts := s.TUF()
	_, err := ts.CurrentVersion(ctx, "timestamp")
	checkErr(t, "CurrentVersion(empty)", err, rampart.ErrNotFound)
	for v, doc := range map[int64]string{1: `{"v":1}`, 2: `{"v":2}`, 3: `{"v":3}`} {
		if err := ts.PutMetadata(ctx, "timestamp", v, []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := ts.CurrentVersion(ctx, "timestamp"); err != nil || v != 3 {
		t.Errorf("CurrentVersion = %d, %v; want 3", v, err)
	}
	if err := ts.PutMetadata(ctx, "timestamp", 2, []byte(`{"v":"2b"}`)); err != nil {
		t.Fatal(err)
	}
	if b, err := ts.Metadata(ctx, "timestamp", 2); err != nil || string(b) != `{"v":"2b"}` {
		t.Errorf("Metadata(v2 rewritten) = %s, %v", b, err)
	}
	_, err = ts.Metadata(ctx, "timestamp", 9)
	checkErr(t, "Metadata(missing)", err, rampart.ErrNotFound)

	k1 := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	k2 := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	if err := ts.PutKeys(ctx, "snapshot", []ed25519.PrivateKey{k1, k2}); err != nil {
		t.Fatal(err)
	}
	if ks, err := ts.Keys(ctx, "snapshot"); err != nil || len(ks) != 2 || !ks[0].Equal(k1) || !ks[1].Equal(k2) {
		t.Errorf("Keys = %d keys, %v", len(ks), err)
	}
	if err := ts.PutKeys(ctx, "snapshot", nil); err != nil {
		t.Fatal(err)
	}
	_, err = ts.Keys(ctx, "snapshot")
	checkErr(t, "Keys(forgotten)", err, rampart.ErrNotFound)

	// The real repository runs on this store.
	repo := tuf.New(tuf.Options{Store: s.TUF()})
	if err := repo.Init(ctx, tuf.InitOptions{}); err != nil && !errorsIsConflict(err) {
		t.Fatalf("Init on the SQL store: %v", err)
	}
	if _, err := repo.Metadata(ctx, "root.json"); err != nil {
		t.Errorf("root.json after Init: %v", err)
	}
}
