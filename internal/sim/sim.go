// Package sim is the fleet simulator: it runs many virtual devices against a Rampart server,
// each on the real device agent (internal/agent) with its own key, state directory, clock
// and HTTP transport, and injects faults (offline spells, slow links, failing connections,
// skewed clocks; failing installs, failing health checks, power losses during an install)
// while counting what happened.
//
// Virtual devices take updates with a real installer (A/B on slot files and a file-backed
// boot environment, or a file installer) or with an in-memory A/B stand-in that writes no
// image; reboots and power losses start a new agent on the same state directory, which
// resumes from the installer's journal. Which devices fail, and where they lose power, is a
// function of the seed (FateOf), so a test can predict each device's final state.
//
// It is for load tests, benchmarks and end-to-end tests of the server. It is not a device
// emulator: inventories are synthetic (see Snapshot), and the check-in loop around agent.Step
// is the simulator's own so that it can count each cycle.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent"
	"github.com/rampart-iot/rampart/internal/agent/collect"
)

// Limits on Options.
const (
	MaxDevices       = 1_000_000
	MinInterval      = time.Second
	MaxInterval      = 24 * time.Hour
	MaxConcurrent    = 10_000
	MaxOfflineFor    = 24 * time.Hour
	MaxSlowLink      = time.Minute
	MaxClockSkew     = 24 * time.Hour
	maxTypeLen       = 128
	maxEnrollToken   = 256
	defaultParallel  = 64
	defaultSpread    = 10 * time.Second
	requestTimeout   = 30 * time.Second
	maxFailureBackof = 10 * time.Minute
)

// DeviceType is one kind of virtual device and its share of the fleet.
type DeviceType struct {
	Name   string
	Weight int // relative share, 1 to 1,000,000
}

// Faults says which faults to inject. The zero value injects none.
type Faults struct {
	// OfflineRate is the probability, at each check-in cycle, that a device goes offline
	// for a spell of about OfflineFor (half to one and a half times it). An offline
	// device's requests fail with a connection error.
	OfflineRate float64
	OfflineFor  time.Duration
	// SlowLink is the latency added to every request (half to one and a half times it).
	SlowLink time.Duration
	// ClockSkew is the largest skew of a device's clock, either way; each device gets a
	// fixed skew drawn uniformly from [-ClockSkew, +ClockSkew].
	ClockSkew time.Duration
	// FailRate is the probability that a request fails with a connection error: half of
	// them before the request is sent, half after the server answered (the answer is lost).
	FailRate float64
	// FailInstallRate is the share of devices whose installs fail (see Fate); they report
	// failure with a log excerpt.
	FailInstallRate float64
	// FailHealthRate is the share of devices whose health check fails after an update; they
	// roll back and report rolled-back.
	FailHealthRate float64
	// PowerLossRate is the share of devices that lose power once during their first
	// install, at a journal step drawn from the seed, and boot again.
	PowerLossRate float64
}

// Options configures a simulation.
type Options struct {
	Server  string // base URL of the server's device API, such as http://127.0.0.1:9000
	Devices int    // number of virtual devices, 1 to MaxDevices
	// EnrollToken admits the devices; without it they enroll and wait for an operator.
	EnrollToken string
	// Types are the device types and their shares; device i's type depends only on Seed and i.
	Types []DeviceType
	// StateRoot holds one state directory per device; a second run on the same root and
	// seed continues with the same devices.
	StateRoot string
	// Interval is the check-in interval (MinInterval to MaxInterval), jittered ±10%; zero
	// follows the interval the server suggests, as a real device does.
	Interval time.Duration
	Faults   Faults
	// Seed makes serials, types, skews, inventories and fault draws reproducible.
	Seed int64
	Log  *slog.Logger
	// MaxConcurrent bounds the HTTP requests in flight across all devices (default 64).
	MaxConcurrent int
	// Installer is how devices take updates: InstallerNone (or "": they ignore work),
	// InstallerAB, InstallerFile or InstallerMemory.
	Installer string
}

// Stats counts what the virtual devices did. All counts are since the start of Run.
type Stats struct {
	Devices        int64 // virtual devices started
	Enrolled       int64 // devices that hold a device ID from the server
	CheckIns       int64 // check-in cycles that succeeded
	Pending        int64 // cycles that ended waiting for operator approval
	Failures       int64 // cycles that failed (injected faults, server errors, timeouts)
	Requests       int64 // HTTP requests the devices made, injected failures included
	Injected       int64 // requests failed by FailRate
	Offline        int64 // offline spells begun
	OfflineNow     int64 // devices in an offline spell now
	Inventories    int64 // inventory uploads the server accepted
	Installs       int64 // updates handed to an installer
	Updated        int64 // of those, updates that ended in success
	UpdateFailures int64 // ... in failure
	RolledBack     int64 // ... rolled back
	Reboots        int64 // reboots the agents asked for
	PowerLosses    int64 // power losses injected
	Elapsed        time.Duration
}

// counters are the live, atomically updated Stats.
type counters struct {
	devices, enrolled, checkIns, pending, failures                     atomic.Int64
	requests, injected, offline, offlineNow, inventory                 atomic.Int64
	installs, updated, installFailed, rolledBack, reboots, powerLosses atomic.Int64
}

// Sim is one simulation: a fleet of virtual devices.
type Sim struct {
	opts    Options
	log     *slog.Logger
	c       counters
	sem     chan struct{}
	base    *http.Transport
	started atomic.Int64 // unix nanoseconds of Run's start, 0 before
	ended   atomic.Int64
}

// New checks the options and prepares a simulation; nothing runs until Run.
func New(o Options) (*Sim, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = defaultParallel
	}
	base := &http.Transport{
		Proxy:                 nil, // the simulator talks to the server it was given, never through a proxy
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:          o.MaxConcurrent,
		MaxIdleConnsPerHost:   o.MaxConcurrent,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: requestTimeout,
	}
	return &Sim{opts: o, log: o.Log, sem: make(chan struct{}, o.MaxConcurrent), base: base}, nil
}

func (o *Options) validate() error {
	u, err := url.Parse(o.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("server must be an http or https URL, got %q: %w", o.Server, rampart.ErrInvalid)
	}
	if o.Devices < 1 || o.Devices > MaxDevices {
		return fmt.Errorf("devices must be 1 to %d, got %d: %w", MaxDevices, o.Devices, rampart.ErrInvalid)
	}
	if len(o.EnrollToken) > maxEnrollToken {
		return fmt.Errorf("enrollment token longer than %d bytes: %w", maxEnrollToken, rampart.ErrInvalid)
	}
	if len(o.Types) == 0 {
		return fmt.Errorf("at least one device type is required: %w", rampart.ErrInvalid)
	}
	if len(o.Types) > 100 {
		return fmt.Errorf("at most 100 device types: %w", rampart.ErrInvalid)
	}
	for _, t := range o.Types {
		if t.Name == "" || len(t.Name) > maxTypeLen {
			return fmt.Errorf("device type names must be 1 to %d bytes, got %q: %w", maxTypeLen, t.Name, rampart.ErrInvalid)
		}
		if t.Weight < 1 || t.Weight > 1_000_000 {
			return fmt.Errorf("device type %s: weight must be 1 to 1000000, got %d: %w", t.Name, t.Weight, rampart.ErrInvalid)
		}
	}
	if o.StateRoot == "" {
		return fmt.Errorf("a state root directory is required: %w", rampart.ErrInvalid)
	}
	if o.Interval != 0 && (o.Interval < MinInterval || o.Interval > MaxInterval) {
		return fmt.Errorf("interval must be %v to %v (or zero to follow the server), got %v: %w", MinInterval, MaxInterval, o.Interval, rampart.ErrInvalid)
	}
	if o.MaxConcurrent < 0 || o.MaxConcurrent > MaxConcurrent {
		return fmt.Errorf("max concurrent requests must be 1 to %d, got %d: %w", MaxConcurrent, o.MaxConcurrent, rampart.ErrInvalid)
	}
	switch o.Installer {
	case "", InstallerNone:
		if f := o.Faults; f.FailInstallRate > 0 || f.FailHealthRate > 0 || f.PowerLossRate > 0 {
			return fmt.Errorf("install, health and power loss faults need an installer: %w", rampart.ErrInvalid)
		}
	case InstallerAB, InstallerFile, InstallerMemory:
	default:
		return fmt.Errorf("installer must be none, ab, file or memory, got %q: %w", o.Installer, rampart.ErrInvalid)
	}
	return o.Faults.validate()
}

func (f *Faults) validate() error {
	for name, r := range map[string]float64{"offline rate": f.OfflineRate, "fail rate": f.FailRate,
		"install failure rate": f.FailInstallRate, "health failure rate": f.FailHealthRate, "power loss rate": f.PowerLossRate} {
		if math.IsNaN(r) || r < 0 || r > 1 {
			return fmt.Errorf("%s must be 0 to 1, got %v: %w", name, r, rampart.ErrInvalid)
		}
	}
	if f.OfflineFor < 0 || f.OfflineFor > MaxOfflineFor {
		return fmt.Errorf("offline spells must last 0 to %v, got %v: %w", MaxOfflineFor, f.OfflineFor, rampart.ErrInvalid)
	}
	if f.OfflineRate > 0 && f.OfflineFor == 0 {
		return fmt.Errorf("an offline rate needs a positive offline duration: %w", rampart.ErrInvalid)
	}
	if f.SlowLink < 0 || f.SlowLink > MaxSlowLink {
		return fmt.Errorf("slow link latency must be 0 to %v, got %v: %w", MaxSlowLink, f.SlowLink, rampart.ErrInvalid)
	}
	if f.ClockSkew < 0 || f.ClockSkew > MaxClockSkew {
		return fmt.Errorf("clock skew must be 0 to %v, got %v: %w", MaxClockSkew, f.ClockSkew, rampart.ErrInvalid)
	}
	return nil
}

// Run runs a simulation until ctx ends and returns the final counts.
func Run(ctx context.Context, o Options) (*Stats, error) {
	s, err := New(o)
	if err != nil {
		return nil, err
	}
	err = s.Run(ctx)
	st := s.Stats()
	return &st, err
}

// Stats returns the counts so far; it may be called while Run runs.
func (s *Sim) Stats() Stats {
	c := &s.c
	st := Stats{
		Devices: c.devices.Load(), Enrolled: c.enrolled.Load(), CheckIns: c.checkIns.Load(),
		Pending: c.pending.Load(), Failures: c.failures.Load(), Requests: c.requests.Load(),
		Injected: c.injected.Load(), Offline: c.offline.Load(), OfflineNow: c.offlineNow.Load(),
		Inventories: c.inventory.Load(), Installs: c.installs.Load(), Updated: c.updated.Load(),
		UpdateFailures: c.installFailed.Load(), RolledBack: c.rolledBack.Load(), Reboots: c.reboots.Load(),
		PowerLosses: c.powerLosses.Load(),
	}
	if start := s.started.Load(); start != 0 {
		end := s.ended.Load()
		if end == 0 {
			end = time.Now().UnixNano()
		}
		st.Elapsed = time.Duration(end - start)
	}
	return st
}

// Run starts every virtual device and returns once ctx ends and all of them stopped. It
// fails only if a device cannot be set up (its state directory, say); server errors and
// injected faults are counted, never returned. A Sim runs once.
func (s *Sim) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(0, time.Now().UnixNano()) {
		return errors.New("simulator: already run")
	}
	defer func() { s.ended.Store(time.Now().UnixNano()) }()
	defer s.base.CloseIdleConnections()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.log.Info("simulation started", "devices", s.opts.Devices, "server", s.opts.Server, "seed", s.opts.Seed)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for i := range s.opts.Devices {
		wg.Go(func() {
			if err := s.runDevice(ctx, i); err != nil {
				once.Do(func() { firstErr = err })
				cancel()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("simulator: %w", firstErr)
	}
	st := s.Stats()
	s.log.Info("simulation stopped", "enrolled", st.Enrolled, "check_ins", st.CheckIns, "failures", st.Failures)
	return nil
}

// Serial is the serial number of virtual device i in a simulation with the given seed.
func Serial(seed int64, i int) string { return fmt.Sprintf("sim-%d-%07d", seed, i) }

// device is one virtual device's simulator-side state.
type device struct {
	index    int
	serial   string
	rng      *rand.Rand // the device loop's own; the transport has another
	tr       *transport
	enrolled bool
	failures int // cycles failed in a row

	hw    *hardware // nil without an installer
	opts  agent.Options
	agent *agent.Agent // the running agent process
	// rebootAsked is set by the agent's Reboot; the device loop then reboots the device.
	rebootAsked bool
}

// runDevice sets up virtual device i and runs its check-in loop until ctx ends.
func (s *Sim) runDevice(ctx context.Context, i int) error {
	d, err := s.newDevice(ctx, i)
	if err != nil || d == nil {
		return err
	}
	defer d.tr.goOnline()
	defer func() { d.agent.Close() }()
	return s.loop(ctx, d)
}

// newDevice sets up virtual device i, once its turn in the start-up spread has come (nil if
// ctx ended before), and starts its agent.
func (s *Sim) newDevice(ctx context.Context, i int) (*device, error) {
	o := &s.opts
	rng := rand.New(rand.NewPCG(uint64(o.Seed), uint64(i)))
	d := &device{index: i, serial: Serial(o.Seed, i), rng: rng}
	typ := pickType(o.Types, rng)
	skew := time.Duration(0)
	if o.Faults.ClockSkew > 0 {
		skew = time.Duration(rng.Int64N(2*int64(o.Faults.ClockSkew)+1)) - o.Faults.ClockSkew
	}
	d.tr = &transport{sim: s, faults: o.Faults, rng: rand.New(rand.NewPCG(uint64(o.Seed), uint64(i)|1<<63))}
	spread := o.Interval
	if spread == 0 {
		spread = defaultSpread
	}
	// Devices come up spread over one interval, as a fleet does after a power cut.
	if !sleep(ctx, time.Duration(rng.Int64N(int64(spread)))) {
		return nil, nil
	}
	stateDir := filepath.Join(o.StateRoot, fmt.Sprintf("%04d", i/1000), fmt.Sprintf("%07d", i))
	hw, err := s.newHardware(stateDir, i)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", d.serial, err)
	}
	d.hw = hw
	d.opts = agent.Options{
		Server:      o.Server,
		StateDir:    stateDir,
		Identity:    agent.Identity{Serial: d.serial, MAC: macOf(o.Seed, i), DeviceType: typ, HWRevision: "sim-1"},
		EnrollToken: o.EnrollToken,
		Attributes:  map[string]string{"sim": "true"},
		Firmware:    func() string { return BaseVersion },
		// Built at each check-in rather than kept: a few microseconds of CPU against
		// about 3 KiB per device for as long as it runs.
		Inventory:  func(context.Context) (*collect.Snapshot, error) { return Snapshot(o.Seed, i), nil },
		Interval:   o.Interval,
		HTTPClient: &http.Client{Timeout: requestTimeout, Transport: d.tr},
		Log:        s.log.With("serial", d.serial),
		Now:        func() time.Time { return time.Now().Add(skew) },
	}
	if hw != nil {
		d.opts.Firmware = hw.firmware
		d.opts.Reboot = func(context.Context) error { d.rebootAsked = true; return nil }
	}
	if err := d.start(); err != nil {
		return nil, fmt.Errorf("device %s: %w", d.serial, err)
	}
	s.c.devices.Add(1)
	return d, nil
}

// start starts a new agent process on the device.
func (d *device) start() error {
	if d.hw != nil {
		d.opts.Installer = d.hw.installer()
	}
	a, err := agent.New(d.opts)
	if err != nil {
		return err
	}
	d.agent = a
	return nil
}

// loop runs the device's check-in cycles until ctx ends. It is kept apart from the set-up
// in runDevice, and small, because its frame is what a sleeping device keeps of its stack.
func (s *Sim) loop(ctx context.Context, d *device) error {
	for {
		s.maybeGoOffline(d)
		next, lostPower, err := step(ctx, d.agent)
		if ctx.Err() != nil {
			return nil
		}
		if d.hw != nil && (lostPower || d.rebootAsked) {
			if !lostPower && err == nil {
				s.c.checkIns.Add(1) // the cycle checked in, then asked for the reboot
			}
			if err := s.restart(ctx, d); err != nil {
				return err
			}
			continue
		}
		if !sleep(ctx, s.afterStep(d, next, err)) {
			return nil
		}
	}
}

// restart boots the device again after a reboot or a power loss: the bootloader picks a slot
// and a new agent process resumes from the state directory.
func (s *Sim) restart(ctx context.Context, d *device) error {
	s.countEnrolled(d)
	if d.rebootAsked {
		s.c.reboots.Add(1)
	}
	d.rebootAsked = false
	d.agent.Close()
	if err := d.hw.boot(ctx); err != nil {
		return fmt.Errorf("device %s: boot: %w", d.serial, err)
	}
	if err := d.start(); err != nil {
		return fmt.Errorf("device %s: %w", d.serial, err)
	}
	return nil
}

// afterStep counts a cycle's result and returns how long to wait for the next one.
func (s *Sim) afterStep(d *device, next time.Duration, err error) time.Duration {
	s.countEnrolled(d)
	interval := s.opts.Interval
	switch {
	case errors.Is(err, agent.ErrPending):
		d.failures = 0
		s.c.pending.Add(1)
	case err != nil:
		d.failures++
		s.c.failures.Add(1)
		next = backoff(d.failures, interval, d.rng)
		s.log.Debug("check-in failed", "serial", d.serial, "err", err, "retry_in", next)
	default:
		d.failures = 0
		s.c.checkIns.Add(1)
		if interval > 0 {
			next = interval - interval/10 + time.Duration(d.rng.Int64N(int64(interval/5)+1))
		}
	}
	return next
}

func (s *Sim) countEnrolled(d *device) {
	if !d.enrolled && d.agent.DeviceID() != "" {
		d.enrolled = true
		s.c.enrolled.Add(1)
	}
}

// step runs one agent cycle; lostPower reports that a failpoint cut the power in it.
func step(ctx context.Context, a *agent.Agent) (next time.Duration, lostPower bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(powerLoss); !ok {
				panic(p)
			}
			lostPower = true
		}
	}()
	next, err = a.Step(ctx)
	return next, false, err
}

// maybeGoOffline starts an offline spell with probability OfflineRate.
func (s *Sim) maybeGoOffline(d *device) {
	f := s.opts.Faults
	if f.OfflineRate == 0 || d.tr.offlineNow() || d.rng.Float64() >= f.OfflineRate {
		return
	}
	spell := f.OfflineFor/2 + time.Duration(d.rng.Int64N(int64(f.OfflineFor)+1))
	d.tr.goOffline(time.Now().Add(spell))
}

// pickType draws a device type by weight.
func pickType(types []DeviceType, rng *rand.Rand) string {
	total := 0
	for _, t := range types {
		total += t.Weight
	}
	n := rng.IntN(total)
	for _, t := range types {
		if n < t.Weight {
			return t.Name
		}
		n -= t.Weight
	}
	return types[len(types)-1].Name
}

// backoff is full-jitter exponential backoff after failed cycles, from two seconds (or the
// interval, if shorter) up to ten minutes (or ten intervals, if shorter).
func backoff(failures int, interval time.Duration, rng *rand.Rand) time.Duration {
	lo, hi := 2*time.Second, maxFailureBackof
	if interval > 0 {
		lo, hi = min(lo, interval), min(hi, 10*interval)
	}
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + time.Duration(rng.Int64N(int64(d/2)+1))
}

// sleep waits for d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
