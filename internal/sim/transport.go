package sim

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rampart-iot/rampart/internal/nativeproto"
)

// errInjected is the cause of every failure the simulator injects.
var errInjected = errors.New("connection reset by peer (injected by the simulator)")

// errOffline is what an offline device's requests fail with.
var errOffline = errors.New("network is unreachable (device offline in the simulator)")

// transport is one virtual device's link to the server: it adds latency, fails requests
// while the device is offline or at FailRate, bounds the requests in flight across the
// whole simulation, and counts requests and accepted inventories.
type transport struct {
	sim    *Sim
	faults Faults

	mu           sync.Mutex
	rng          *rand.Rand
	offlineUntil time.Time // zero when online
}

// goOffline starts an offline spell that lasts until the given time.
func (t *transport) goOffline(until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.offlineUntil.IsZero() {
		t.sim.c.offline.Add(1)
		t.sim.c.offlineNow.Add(1)
	}
	t.offlineUntil = until
}

// goOnline ends an offline spell, if one is on.
func (t *transport) goOnline() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endSpellLocked(true)
}

// offlineNow reports whether the device is in an offline spell, ending one that is over.
func (t *transport) offlineNow() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.endSpellLocked(false)
}

// endSpellLocked ends the offline spell if it is over (or now, if force), and reports
// whether the device is online.
func (t *transport) endSpellLocked(force bool) bool {
	if t.offlineUntil.IsZero() {
		return true
	}
	if !force && time.Now().Before(t.offlineUntil) {
		return false
	}
	t.offlineUntil = time.Time{}
	t.sim.c.offlineNow.Add(-1)
	return true
}

// draw returns the latency to add and whether to fail the request before or after sending.
func (t *transport) draw() (latency time.Duration, failBefore, failAfter bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.faults.SlowLink; f > 0 {
		latency = f/2 + time.Duration(t.rng.Int64N(int64(f)+1))
	}
	if t.faults.FailRate > 0 && t.rng.Float64() < t.faults.FailRate {
		if t.rng.IntN(2) == 0 {
			failBefore = true
		} else {
			failAfter = true
		}
	}
	return latency, failBefore, failAfter
}

// RoundTrip sends r through the shared transport, with the device's faults.
func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	c := &t.sim.c
	c.requests.Add(1)
	fail := func(err error) (*http.Response, error) {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	if t.offlineNow() {
		return fail(errOffline)
	}
	latency, failBefore, failAfter := t.draw()
	if !sleep(r.Context(), latency) {
		return fail(r.Context().Err())
	}
	if failBefore {
		c.injected.Add(1)
		return fail(errInjected)
	}
	select {
	case t.sim.sem <- struct{}{}:
	case <-r.Context().Done():
		return fail(r.Context().Err())
	}
	resp, err := t.sim.base.RoundTrip(r)
	if err != nil {
		<-t.sim.sem
		return nil, err
	}
	if failAfter {
		// The server did the work, but its answer never arrives.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		<-t.sim.sem
		c.injected.Add(1)
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: errInjected}
	}
	if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, nativeproto.PathInventory) && resp.StatusCode < 300 {
		c.inventory.Add(1)
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, sem: t.sim.sem}
	return resp, nil
}

// releasingBody gives the request's slot back when the agent closes the answer.
type releasingBody struct {
	io.ReadCloser
	sem  chan struct{}
	once sync.Once
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { <-b.sem })
	return err
}
