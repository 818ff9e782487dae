package rollout

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/rampart-iot/rampart"
)

// Limits on plans, so that what an operator sends stays bounded.
const (
	// MaxWaves is the most waves a plan may have.
	MaxWaves = 16
	// MaxBake is the longest Bake or BakeJitter of a wave.
	MaxBake = 30 * 24 * time.Hour
	// maxPlanText bounds the text ParsePlan reads.
	maxPlanText = 4096
	// maxWaveName bounds a wave's name.
	maxWaveName = 64
	// maxCount bounds a count Amount.
	maxCount = 10_000_000
)

// Amount is a number of devices, either a count or a percentage of some total.
type Amount struct {
	// N is the count, or the percentage (0-100) when Percent is set.
	N int
	// Percent says N is a percentage.
	Percent bool
}

// Count returns a count of N devices.
func Count(n int) Amount { return Amount{N: n} }

// Percent returns n percent of the devices.
func Percent(n int) Amount { return Amount{N: n, Percent: true} }

// Of resolves a against total devices: a percentage rounds up, and the result is never more than
// total or less than 0.
func (a Amount) Of(total int) int {
	n := a.N
	if a.Percent {
		n = (a.N*total + 99) / 100
	}
	return max(0, min(n, total))
}

// String returns "10" for a count and "5%" for a percentage, as ParseAmount reads them.
func (a Amount) String() string {
	if a.Percent {
		return strconv.Itoa(a.N) + "%"
	}
	return strconv.Itoa(a.N)
}

// ParseAmount reads "10" (a count) or "5%" (a percentage).
func ParseAmount(s string) (Amount, error) {
	num, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || strings.HasPrefix(num, "+") {
		return Amount{}, fmt.Errorf("amount %.20q: want a count like 10 or a percentage like 5%%: %w", s, rampart.ErrInvalid)
	}
	a := Amount{N: n, Percent: pct}
	if err := a.check(); err != nil {
		return Amount{}, fmt.Errorf("amount %.20q: %w", s, err)
	}
	return a, nil
}

func (a Amount) check() error {
	switch {
	case a.N <= 0:
		return fmt.Errorf("must be more than 0: %w", rampart.ErrInvalid)
	case a.Percent && a.N > 100:
		return fmt.Errorf("percentage above 100: %w", rampart.ErrInvalid)
	case !a.Percent && a.N > maxCount:
		return fmt.Errorf("count above %d: %w", maxCount, rampart.ErrInvalid)
	}
	return nil
}

// Wave is one step of a plan.
type Wave struct {
	// Name labels the wave ("canary").
	Name string
	// Size is cumulative: how many of the targeted devices this wave and the ones before it
	// cover. A count covers that many devices, a percentage that share of the target set.
	Size Amount
	// SuccessThreshold is how many of the wave's own devices must succeed before the next wave
	// may start (a count, or a percentage of the wave).
	SuccessThreshold Amount
	// FailureThreshold is how many of the wave's own devices failing halts the deployment.
	FailureThreshold Amount
	// Bake is the least time between the start of this wave and the start of the next one.
	Bake time.Duration
	// BakeJitter is the most random time added to Bake, so that nobody can predict when the
	// next wave starts.
	BakeJitter time.Duration
}

// Plan says how a deployment moves through its target set: wave by wave.
type Plan struct {
	// Waves run in order; the last one covers every targeted device.
	Waves []Wave
}

// DefaultPlan returns a canary of 10 devices, then 5%, 25% and 100% of the target set. The
// canary halts on its first failure; later waves need 95% success and halt at 5% failures.
func DefaultPlan() Plan {
	return Plan{Waves: []Wave{
		{Name: "canary", Size: Count(10), SuccessThreshold: Percent(100), FailureThreshold: Count(1), Bake: time.Hour, BakeJitter: time.Hour},
		{Name: "5%", Size: Percent(5), SuccessThreshold: Percent(95), FailureThreshold: Percent(5), Bake: 2 * time.Hour, BakeJitter: time.Hour},
		{Name: "25%", Size: Percent(25), SuccessThreshold: Percent(95), FailureThreshold: Percent(5), Bake: 4 * time.Hour, BakeJitter: 2 * time.Hour},
		{Name: "all", Size: Percent(100), SuccessThreshold: Percent(95), FailureThreshold: Percent(5)},
	}}
}

// Validate checks p: one to MaxWaves waves with unique printable names; sizes growing (counts
// first, then percentages) and the last one 100%; thresholds above zero and at most 100%; bake
// times between 0 and MaxBake. Errors wrap rampart.ErrInvalid and name the wave.
func (p Plan) Validate() error {
	if len(p.Waves) == 0 {
		return fmt.Errorf("plan: no waves: %w", rampart.ErrInvalid)
	}
	if len(p.Waves) > MaxWaves {
		return fmt.Errorf("plan: %d waves, at most %d: %w", len(p.Waves), MaxWaves, rampart.ErrInvalid)
	}
	names := make(map[string]bool, len(p.Waves))
	for i, w := range p.Waves {
		if err := w.validate(); err != nil {
			return fmt.Errorf("plan: wave %d: %w", i+1, err)
		}
		if names[w.Name] {
			return fmt.Errorf("plan: wave %d: name %q used twice: %w", i+1, w.Name, rampart.ErrInvalid)
		}
		names[w.Name] = true
		if i == 0 {
			continue
		}
		prev := p.Waves[i-1].Size
		switch {
		case prev.Percent && !w.Size.Percent:
			return fmt.Errorf("plan: wave %d %q: count %s after a percentage: put counts first: %w", i+1, w.Name, w.Size, rampart.ErrInvalid)
		case prev.Percent == w.Size.Percent && w.Size.N <= prev.N:
			return fmt.Errorf("plan: wave %d %q: size %s not larger than the wave before (%s); sizes are cumulative: %w", i+1, w.Name, w.Size, prev, rampart.ErrInvalid)
		}
	}
	if last := p.Waves[len(p.Waves)-1]; last.Size != Percent(100) {
		return fmt.Errorf("plan: last wave %q: size %s, want 100%%: %w", last.Name, last.Size, rampart.ErrInvalid)
	}
	return nil
}

func (w Wave) validate() error {
	if w.Name == "" || len(w.Name) > maxWaveName || strings.IndexFunc(w.Name, badNameRune) >= 0 {
		return fmt.Errorf("name %.70q: want 1-%d printable characters without spaces, ';' or '=': %w", w.Name, maxWaveName, rampart.ErrInvalid)
	}
	for _, f := range []struct {
		what string
		a    Amount
	}{{"size", w.Size}, {"success threshold", w.SuccessThreshold}, {"failure threshold", w.FailureThreshold}} {
		if err := f.a.check(); err != nil {
			return fmt.Errorf("%q: %s %s: %w", w.Name, f.what, f.a, err)
		}
	}
	if w.Bake < 0 || w.Bake > MaxBake || w.BakeJitter < 0 || w.BakeJitter > MaxBake {
		return fmt.Errorf("%q: bake %s, jitter %s: each must be between 0 and %s: %w", w.Name, w.Bake, w.BakeJitter, MaxBake, rampart.ErrInvalid)
	}
	return nil
}

func badNameRune(r rune) bool {
	return !unicode.IsPrint(r) || unicode.IsSpace(r) || r == ';' || r == '='
}

// Sizes returns how many devices each wave of p gets out of total: cumulative sizes resolved
// against total, never shrinking, and the last wave taking whatever is left. A wave may get 0
// devices when the fleet is small (a 5% wave after a canary of 10 in a fleet of 100).
func (p Plan) Sizes(total int) []int {
	sizes := make([]int, len(p.Waves))
	covered := 0
	for i, w := range p.Waves {
		upTo := max(covered, w.Size.Of(total))
		if i == len(p.Waves)-1 {
			upTo = total
		}
		sizes[i] = upTo - covered
		covered = upTo
	}
	return sizes
}

// AssignWaves splits the devices into p's waves (see Plan.Sizes). Membership is random but
// fixed by seed: the same devices (in any order) and seed give the same waves, so the scheduler
// stores the seed, not the assignment. The seed must be secret and random, so that an implant
// cannot predict whether its device is a canary. Duplicate IDs count once. A plan without waves
// yields none.
func AssignWaves(deviceIDs []string, p Plan, seed int64) [][]string {
	if len(p.Waves) == 0 {
		return nil
	}
	ids := slices.Clone(deviceIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x72616d7061727421)) // "rampart!"
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	waves := make([][]string, len(p.Waves))
	for i, n := range p.Sizes(len(ids)) {
		waves[i] = ids[:n:n]
		ids = ids[n:]
	}
	return waves
}

// BakeUntil returns when the bake of w ends for a wave started at start: start + Bake plus a
// random part of BakeJitter. rnd(n) must return a number in [0, n) (rand.Int64N of a securely
// seeded source); out-of-range answers are clamped. The scheduler stores the result with the
// wave, so a restart keeps it.
func BakeUntil(w Wave, start time.Time, rnd func(n int64) int64) time.Time {
	until := start.Add(w.Bake)
	if w.BakeJitter <= 0 {
		return until
	}
	j := rnd(int64(w.BakeJitter) + 1)
	return until.Add(time.Duration(max(0, min(j, int64(w.BakeJitter)))))
}

// String returns p in the form ParsePlan reads, one wave per "; "-separated part.
func (p Plan) String() string {
	parts := make([]string, len(p.Waves))
	for i, w := range p.Waves {
		parts[i] = fmt.Sprintf("%s name=%s success=%s fail=%s bake=%s jitter=%s",
			w.Size, w.Name, w.SuccessThreshold, w.FailureThreshold, w.Bake, w.BakeJitter)
	}
	return strings.Join(parts, "; ")
}

// ParsePlan reads a plan written as waves separated by ';', each a size followed by optional
// key=value settings separated by spaces:
//
//	10 name=canary success=100% fail=1 bake=1h jitter=1h; 5% bake=2h; 25%; 100%
//
// Omitted settings default to name "wave N" without the space ("wave1"…), success=95%, fail=5%,
// bake=1h and jitter=0. The plan is validated; errors wrap rampart.ErrInvalid.
func ParsePlan(s string) (Plan, error) {
	if len(s) > maxPlanText {
		return Plan{}, fmt.Errorf("plan: %d bytes, at most %d: %w", len(s), maxPlanText, rampart.ErrInvalid)
	}
	var p Plan
	for i, part := range strings.Split(s, ";") {
		if i >= MaxWaves {
			return Plan{}, fmt.Errorf("plan: more than %d waves: %w", MaxWaves, rampart.ErrInvalid)
		}
		w, err := parseWave(part, i+1)
		if err != nil {
			return Plan{}, fmt.Errorf("plan: wave %d: %w", i+1, err)
		}
		p.Waves = append(p.Waves, w)
	}
	if err := p.Validate(); err != nil {
		return Plan{}, err
	}
	return p, nil
}

func parseWave(s string, n int) (Wave, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return Wave{}, fmt.Errorf("empty: want a size like 5%%: %w", rampart.ErrInvalid)
	}
	size, err := ParseAmount(fields[0])
	if err != nil {
		return Wave{}, fmt.Errorf("size: %w", err)
	}
	w := Wave{Name: "wave" + strconv.Itoa(n), Size: size, SuccessThreshold: Percent(95), FailureThreshold: Percent(5), Bake: time.Hour}
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		key, val, ok := strings.Cut(f, "=")
		if !ok || seen[key] {
			return Wave{}, fmt.Errorf("setting %.40q: want key=value, each key once: %w", f, rampart.ErrInvalid)
		}
		seen[key] = true
		switch key {
		case "name":
			w.Name = val
		case "success":
			w.SuccessThreshold, err = ParseAmount(val)
		case "fail":
			w.FailureThreshold, err = ParseAmount(val)
		case "bake":
			w.Bake, err = parseDuration(val)
		case "jitter":
			w.BakeJitter, err = parseDuration(val)
		default:
			return Wave{}, fmt.Errorf("unknown setting %.40q (want name, success, fail, bake or jitter): %w", key, rampart.ErrInvalid)
		}
		if err != nil {
			return Wave{}, fmt.Errorf("%s: %w", key, err)
		}
	}
	return w, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %.40q: want a Go duration like 90m or 2h: %w", s, rampart.ErrInvalid)
	}
	return d, nil
}
