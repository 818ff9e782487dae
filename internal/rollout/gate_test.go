package rollout

import (
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	baked := t0.Add(time.Hour)
	pct := Wave{Name: "5%", SuccessThreshold: Percent(90), FailureThreshold: Percent(10)}
	canary := Wave{Name: "canary", SuccessThreshold: Count(10), FailureThreshold: Count(1)}
	tests := []struct {
		name       string
		w          Wave
		size       int
		c          Counts
		now        time.Time
		want       Verdict
		wantReason string
	}{
		{"running", pct, 100, Counts{Scheduled: 50, InProgress: 30, Succeeded: 15, Failed: 5}, baked, Wait, "15 of 100 devices succeeded, 90 needed"},
		{"failures reach percent", pct, 100, Counts{InProgress: 40, Succeeded: 50, Failed: 10}, baked, Halt, "10 of 100 devices failed"},
		{"percent rounds up", pct, 15, Counts{InProgress: 13, Failed: 1}, baked, Wait, "0 of 15"},
		{"percent rounds up halt", pct, 15, Counts{InProgress: 13, Failed: 2}, baked, Halt, "threshold 10% (2)"},
		{"first canary failure", canary, 10, Counts{InProgress: 9, Failed: 1}, baked, Halt, "1 of 10 devices failed"},
		{"successes but baking", pct, 100, Counts{Succeeded: 95, Failed: 5}, t0, Wait, "baking until"},
		{"successes and baked", pct, 100, Counts{InProgress: 6, Succeeded: 90, Failed: 4}, baked, Advance, "bake over"},
		{"halt beats advance", pct, 100, Counts{Succeeded: 90, Failed: 10}, baked, Halt, "failed"},
		{"finished below threshold", pct, 100, Counts{Succeeded: 89, Failed: 9}, baked, Halt, "all devices finished"},
		{"count threshold above wave size", canary, 4, Counts{Succeeded: 4}, baked, Advance, "4 of 4"},
		{"empty wave", pct, 0, Counts{}, baked, Advance, "0 of 0"},
		{"empty wave baking", pct, 0, Counts{}, t0, Wait, "baking"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Evaluate(tt.w, tt.size, tt.c, baked, tt.now)
			if got.Verdict != tt.want || !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("Evaluate(%+v, %d, %+v) = %s %q, want %s with %q", tt.w, tt.size, tt.c, got.Verdict, got.Reason, tt.want, tt.wantReason)
			}
		})
	}
}

func TestCountsAdd(t *testing.T) {
	t.Parallel()
	var c Counts
	for _, s := range allStates {
		c.Add(s)
	}
	if want := (Counts{Scheduled: 1, InProgress: 5, Succeeded: 1, Failed: 3}); c != want {
		t.Errorf("Counts after one of each state = %+v, want %+v", c, want)
	}
}

// TestEvaluateMoreFailures checks that more failures never turn a halt into anything else,
// and never turn a wait into an advance.
func TestEvaluateMoreFailures(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		amount := func(label string) Amount {
			if rapid.Bool().Draw(t, label+"Pct") {
				return Percent(rapid.IntRange(1, 100).Draw(t, label))
			}
			return Count(rapid.IntRange(1, 50).Draw(t, label))
		}
		w := Wave{Name: "w", SuccessThreshold: amount("success"), FailureThreshold: amount("failure")}
		c := Counts{
			Scheduled:  rapid.IntRange(0, 30).Draw(t, "scheduled"),
			InProgress: rapid.IntRange(0, 30).Draw(t, "inProgress"),
			Succeeded:  rapid.IntRange(0, 30).Draw(t, "succeeded"),
			Failed:     rapid.IntRange(0, 30).Draw(t, "failed"),
		}
		size := c.Scheduled + c.InProgress + c.Succeeded + c.Failed
		now := t0.Add(time.Duration(rapid.IntRange(0, 120).Draw(t, "minutes")) * time.Minute)
		bakeUntil := t0.Add(time.Hour)
		before := Evaluate(w, size, c, bakeUntil, now)

		// One more failure, taken from the devices still pending (or added to the wave).
		more := c
		moreSize := size
		switch {
		case more.Scheduled > 0:
			more.Scheduled--
		case more.InProgress > 0:
			more.InProgress--
		default:
			moreSize++
		}
		more.Failed++
		after := Evaluate(w, moreSize, more, bakeUntil, now)
		if before.Verdict == Halt && after.Verdict != Halt {
			t.Fatalf("%+v halts (%s) but %+v gives %s (%s)", c, before.Reason, more, after.Verdict, after.Reason)
		}
		if before.Verdict == Wait && after.Verdict == Advance {
			t.Fatalf("%+v waits (%s) but %+v advances (%s)", c, before.Reason, more, after.Reason)
		}
	})
}
