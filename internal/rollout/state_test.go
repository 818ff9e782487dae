package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/rampart-iot/rampart"
)

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

var allStates = []DeviceState{Scheduled, Downloading, Downloaded, Installing, Rebooting, Verifying, Success, Failure, RolledBack, Cancelled, TimedOut}

func TestApply(t *testing.T) {
	t.Parallel()
	later := t0.Add(time.Minute)
	tests := []struct {
		name        string
		cur         DeviceStatus
		r           Report
		want        DeviceStatus
		wantChanged bool
		wantErr     error
	}{
		{"first report", NewDeviceStatus(t0), Report{State: Downloading, Seq: 1}, DeviceStatus{State: Downloading, Seq: 1, Since: later}, true, nil},
		{"skip ahead", DeviceStatus{State: Downloading, Seq: 1}, Report{State: Installing, Seq: 2}, DeviceStatus{State: Installing, Seq: 2, Since: later}, true, nil},
		{"no sequence numbers", DeviceStatus{State: Downloading}, Report{State: Downloaded}, DeviceStatus{State: Downloaded, Since: later}, true, nil},
		{"repeated", DeviceStatus{State: Downloaded, Seq: 2, Since: t0}, Report{State: Downloaded, Seq: 2}, DeviceStatus{State: Downloaded, Seq: 2, Since: t0}, false, nil},
		{"backwards", DeviceStatus{State: Installing, Seq: 3, Since: t0}, Report{State: Downloading, Seq: 4}, DeviceStatus{State: Installing, Seq: 3, Since: t0}, false, nil},
		{"older sequence", DeviceStatus{State: Downloading, Seq: 5, Since: t0}, Report{State: Installing, Seq: 4}, DeviceStatus{State: Downloading, Seq: 5, Since: t0}, false, nil},
		{"failure keeps log", DeviceStatus{State: Verifying, Seq: 5}, Report{State: Failure, Seq: 6, Log: "health check failed"}, DeviceStatus{State: Failure, Seq: 6, Since: later, Log: "health check failed"}, true, nil},
		{"progress drops log", DeviceStatus{State: Scheduled}, Report{State: Downloading, Seq: 1, Log: "x"}, DeviceStatus{State: Downloading, Seq: 1, Since: later}, true, nil},
		{"late after success", DeviceStatus{State: Success, Seq: 7, Since: t0}, Report{State: Failure, Seq: 9, Log: "x"}, DeviceStatus{State: Success, Seq: 7, Since: t0}, false, nil},
		{"late after cancel", DeviceStatus{State: Cancelled, Since: t0}, Report{State: Downloading, Seq: 1}, DeviceStatus{State: Cancelled, Since: t0}, false, nil},
		{"server-only state", DeviceStatus{State: Scheduled, Since: t0}, Report{State: Cancelled, Seq: 1}, DeviceStatus{State: Scheduled, Since: t0}, false, rampart.ErrInvalid},
		{"unknown state", DeviceStatus{State: Scheduled, Since: t0}, Report{State: "bricked", Seq: 1}, DeviceStatus{State: Scheduled, Since: t0}, false, rampart.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, changed, err := Apply(tt.cur, tt.r, later)
			if got != tt.want || changed != tt.wantChanged || !errors.Is(err, tt.wantErr) {
				t.Errorf("Apply(%+v, %+v) = %+v, %v, %v, want %+v, %v, %v", tt.cur, tt.r, got, changed, err, tt.want, tt.wantChanged, tt.wantErr)
			}
		})
	}
}

func TestApplyBoundsLog(t *testing.T) {
	t.Parallel()
	log := strings.Repeat("é", MaxLogExcerpt) + "the error"
	got, _, err := Apply(NewDeviceStatus(t0), Report{State: RolledBack, Seq: 1, Log: log}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Log) > MaxLogExcerpt || !strings.HasSuffix(got.Log, "the error") || !strings.HasPrefix(got.Log, "é") {
		t.Errorf("Apply kept %d bytes starting %q, want at most %d ending in the error, on a rune boundary", len(got.Log), got.Log[:4], MaxLogExcerpt)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	for _, s := range allStates {
		got, changed := Cancel(DeviceStatus{State: s, Seq: 3, Since: t0}, t0.Add(time.Hour))
		wantChanged := s == Scheduled || s == Downloading || s == Downloaded
		if changed != wantChanged || (changed && got.State != Cancelled) || (!changed && got.State != s) {
			t.Errorf("Cancel(%s) = %s, %v, want changed %v", s, got.State, changed, wantChanged)
		}
	}
}

func TestTimeOut(t *testing.T) {
	t.Parallel()
	deadline := t0.Add(24 * time.Hour)
	tests := []struct {
		state DeviceState
		now   time.Time
		want  DeviceState
	}{
		{Scheduled, deadline.Add(-time.Second), Scheduled},
		{Scheduled, deadline, TimedOut},
		{Downloaded, deadline.Add(time.Minute), TimedOut},
		{Installing, deadline.Add(time.Minute), Installing},
		{Rebooting, deadline.Add(InstallGrace), TimedOut},
		{Success, deadline.Add(InstallGrace), Success},
		{Failure, deadline.Add(InstallGrace), Failure},
	}
	for _, tt := range tests {
		got, changed := TimeOut(DeviceStatus{State: tt.state}, deadline, tt.now)
		if got.State != tt.want || changed != (tt.want != tt.state) {
			t.Errorf("TimeOut(%s, deadline, deadline%+v) = %s, %v, want %s", tt.state, tt.now.Sub(deadline), got.State, changed, tt.want)
		}
	}
	if got, changed := TimeOut(DeviceStatus{State: Scheduled}, time.Time{}, deadline); changed {
		t.Errorf("TimeOut without deadline = %s, want unchanged", got.State)
	}
}

// TestApplyProperties feeds random, duplicated and reordered reports (and server decisions)
// to the state machine.
func TestApplyProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		cur := NewDeviceStatus(t0)
		now := t0
		steps := rapid.IntRange(1, 40).Draw(t, "steps")
		for i := range steps {
			now = now.Add(time.Second)
			prev := cur
			var changed bool
			switch rapid.IntRange(0, 9).Draw(t, "kind") {
			case 0:
				cur, changed = Cancel(cur, now)
			case 1:
				cur, changed = TimeOut(cur, t0.Add(time.Duration(rapid.IntRange(0, 60).Draw(t, "deadline"))*time.Second), now)
			default:
				r := Report{
					State: rapid.SampledFrom(allStates).Draw(t, "state"),
					Seq:   rapid.Uint64Range(0, 20).Draw(t, "seq"),
					Log:   rapid.StringN(0, 10, -1).Draw(t, "log"),
				}
				var err error
				cur, changed, err = Apply(cur, r, now)
				if (err != nil) != !r.State.Reportable() {
					t.Fatalf("step %d: Apply(%+v, %+v) error %v", i, prev, r, err)
				}
				again, changedAgain, _ := Apply(cur, r, now.Add(time.Second))
				if changedAgain || again != cur {
					t.Fatalf("step %d: repeating %+v changed %+v to %+v", i, r, cur, again)
				}
			}
			if !cur.State.Valid() {
				t.Fatalf("step %d: invalid state %q", i, cur.State)
			}
			if changed == (cur == prev) {
				t.Fatalf("step %d: changed = %v but %+v -> %+v", i, changed, prev, cur)
			}
			if prev.State.Terminal() && cur != prev {
				t.Fatalf("step %d: left terminal %+v for %+v", i, prev, cur)
			}
			if changed && cur.State.rank() <= prev.State.rank() {
				t.Fatalf("step %d: moved backwards or sideways from %s to %s", i, prev.State, cur.State)
			}
			if cur.Seq < prev.Seq {
				t.Fatalf("step %d: sequence went back from %d to %d", i, prev.Seq, cur.Seq)
			}
			if cur.Log != "" && cur.State != Failure && cur.State != RolledBack {
				t.Fatalf("step %d: log kept in state %s", i, cur.State)
			}
		}
	})
}
