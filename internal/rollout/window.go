package rollout

import (
	"fmt"
	"time"

	"github.com/rampart-iot/rampart"
)

// MaxWindows is the most maintenance windows a deployment or device may have.
const MaxWindows = 32

// Window is a recurring maintenance window in a device's local time.
type Window struct {
	// Days are the weekdays on which the window opens; none means every day.
	Days []time.Weekday
	// Start is the local wall-clock time the window opens, as time since midnight (2h is 02:00).
	Start time.Duration
	// End is the local wall-clock time it closes. End before Start means the window crosses
	// midnight and closes on the next day; 24h means midnight at the end of the day.
	End time.Duration
}

// Windows is a set of maintenance windows; a device may update while any of them is open.
// An empty set means no constraint: always open.
type Windows []Window

// Validate checks ws: at most MaxWindows windows; each with valid weekdays, Start in [0, 24h),
// End in (0, 24h] and End different from Start, both whole minutes. Errors wrap rampart.ErrInvalid.
func (ws Windows) Validate() error {
	if len(ws) > MaxWindows {
		return fmt.Errorf("windows: %d, at most %d: %w", len(ws), MaxWindows, rampart.ErrInvalid)
	}
	for i, w := range ws {
		for _, d := range w.Days {
			if d < time.Sunday || d > time.Saturday {
				return fmt.Errorf("window %d: weekday %d: %w", i+1, int(d), rampart.ErrInvalid)
			}
		}
		switch {
		case w.Start < 0 || w.Start >= 24*time.Hour || w.End <= 0 || w.End > 24*time.Hour:
			return fmt.Errorf("window %d: %s-%s: start must be in [0, 24h), end in (0, 24h]: %w", i+1, w.Start, w.End, rampart.ErrInvalid)
		case w.Start == w.End:
			return fmt.Errorf("window %d: starts and ends at %s: %w", i+1, w.Start, rampart.ErrInvalid)
		case w.Start%time.Minute != 0 || w.End%time.Minute != 0:
			return fmt.Errorf("window %d: %s-%s: want whole minutes: %w", i+1, w.Start, w.End, rampart.ErrInvalid)
		}
	}
	return nil
}

// Open reports whether t falls in one of the windows, read in loc (the device's time zone).
// Opening and closing times are wall-clock times on the day in loc, so a window keeps its local
// hours across daylight-saving changes; one whose start falls into the hour skipped in spring
// opens at the same distance after the skipped hour (02:30 becomes 03:30).
func (ws Windows) Open(t time.Time, loc *time.Location) bool {
	if len(ws) == 0 {
		return true
	}
	lt := t.In(loc)
	y, m, d := lt.Date()
	for _, w := range ws {
		// The window opened today or, crossing midnight, yesterday.
		for back := 0; back <= 1; back++ {
			start, end, ok := w.on(y, m, d-back, loc)
			if ok && !t.Before(start) && t.Before(end) {
				return true
			}
		}
	}
	return false
}

// NextOpen returns t if the windows are open at t, else the earliest later moment they open.
// It returns the zero time only if no window ever opens (the windows are invalid).
func (ws Windows) NextOpen(t time.Time, loc *time.Location) time.Time {
	if ws.Open(t, loc) {
		return t
	}
	lt := t.In(loc)
	y, m, d := lt.Date()
	var next time.Time
	for _, w := range ws {
		for ahead := 0; ahead <= 7; ahead++ {
			start, _, ok := w.on(y, m, d+ahead, loc)
			if ok && start.After(t) && (next.IsZero() || start.Before(next)) {
				next = start
				break
			}
		}
	}
	return next
}

// on returns when w opens and closes if it opens on the given local day (day may be out of
// range; time.Date normalizes it). ok is false if w does not open that day or would be empty.
func (w Window) on(y int, m time.Month, day int, loc *time.Location) (start, end time.Time, ok bool) {
	date := time.Date(y, m, day, 12, 0, 0, 0, loc)
	if len(w.Days) > 0 && !containsDay(w.Days, date.Weekday()) {
		return time.Time{}, time.Time{}, false
	}
	start = wallClock(y, m, day, w.Start, loc)
	if w.End > w.Start {
		end = wallClock(y, m, day, w.End, loc)
	} else {
		end = wallClock(y, m, day+1, w.End, loc)
	}
	return start, end, start.Before(end)
}

func wallClock(y int, m time.Month, day int, since time.Duration, loc *time.Location) time.Time {
	h := int(since / time.Hour)
	mi := int(since % time.Hour / time.Minute)
	s := int(since % time.Minute / time.Second)
	return time.Date(y, m, day, h, mi, s, int(since%time.Second), loc)
}

func containsDay(days []time.Weekday, d time.Weekday) bool {
	for _, x := range days {
		if x == d {
			return true
		}
	}
	return false
}
