package server_test

import (
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/store/postgres/pgtest"
)

// TestRevocationReachesOtherReplica runs two servers on one database, as replicas behind a
// load balancer would: a device rejected through one is refused by the other within a few
// seconds, though the other had its admission cached.
func TestRevocationReachesOtherReplica(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(t)
		revocationAcrossReplicas(t, startServer(t, cfg), startServer(t, cfg))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(t)
		cfg.Database = pgtest.NewSchema(t)
		revocationAcrossReplicas(t, startServer(t, cfg), startServer(t, cfg))
	})
}

func revocationAcrossReplicas(t *testing.T, a, b *testServer) {
	if a.admin == "" || b.admin != "" {
		t.Fatalf("admin token: first replica %q, second %q; want only the first to create one", a.admin, b.admin)
	}
	b.admin = a.admin
	d := newFakeDevice(t, "REPL-1")
	if code, _ := d.enroll(t, a, a.enrollToken(t, 1, "")); code != 200 {
		t.Fatalf("enroll through replica A = %d", code)
	}
	if code, _ := d.checkIn(t, b, "1.0"); code != 200 {
		t.Fatalf("check-in through replica B = %d (replicas must share the token secret)", code)
	}
	if code := a.mgmt(t, "POST", "/devices/"+d.id+"/reject", nil, nil); code != 200 {
		t.Fatalf("reject through A = %d", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := d.checkIn(t, b, "1.0")
		if code == 401 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica B still accepts a device rejected through A after 10s (last answer %d)", code)
		}
		time.Sleep(50 * time.Millisecond) // polling for another process's state; no event to wait on
	}
}
