package rollout

import (
	"fmt"
	"strconv"
	"strings"
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

// maxWindowText bounds the text ParseWindows reads.
const maxWindowText = 4096

// dayNames are the weekday names ParseWindow reads (also in full, any case) and String writes.
var dayNames = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// weekOrder lists the weekdays from Monday, the order in which day lists are written and day
// ranges run.
var weekOrder = [7]time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday, time.Sunday}

// String returns w in the form ParseWindow reads: "Mon-Fri 02:00-04:00", "Sat,Sun 22:00-06:00",
// or "01:00-05:00" for every day. Days are written Monday first, runs of three or more as a
// range.
func (w Window) String() string {
	span := clock(w.Start) + "-" + clock(w.End)
	if len(w.Days) == 0 {
		return span
	}
	var in [7]bool
	for _, d := range w.Days {
		if d >= time.Sunday && d <= time.Saturday {
			in[d] = true
		}
	}
	var parts []string
	for i := 0; i < 7; {
		if !in[weekOrder[i]] {
			i++
			continue
		}
		j := i
		for j+1 < 7 && in[weekOrder[j+1]] {
			j++
		}
		switch {
		case j-i >= 2:
			parts = append(parts, dayNames[weekOrder[i]]+"-"+dayNames[weekOrder[j]])
		default:
			for k := i; k <= j; k++ {
				parts = append(parts, dayNames[weekOrder[k]])
			}
		}
		i = j + 1
	}
	return strings.Join(parts, ",") + " " + span
}

// clock writes a time of day as HH:MM (24:00 for the end of the day).
func clock(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// String returns ws in the form ParseWindows reads, one window per "; "-separated part.
func (ws Windows) String() string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = w.String()
	}
	return strings.Join(parts, "; ")
}

// ParseWindows reads maintenance windows separated by ';', each in the form ParseWindow reads:
//
//	Mon-Fri 02:00-04:00; Sat,Sun 22:00-06:00
//
// Empty text (or only spaces) means no windows: always open. The windows are validated;
// errors wrap rampart.ErrInvalid.
func ParseWindows(s string) (Windows, error) {
	if len(s) > maxWindowText {
		return nil, fmt.Errorf("windows: %d bytes, at most %d: %w", len(s), maxWindowText, rampart.ErrInvalid)
	}
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ws Windows
	for i, part := range strings.Split(s, ";") {
		if i >= MaxWindows {
			return nil, fmt.Errorf("windows: more than %d: %w", MaxWindows, rampart.ErrInvalid)
		}
		w, err := ParseWindow(part)
		if err != nil {
			return nil, fmt.Errorf("windows: %w", err)
		}
		ws = append(ws, w)
	}
	if err := ws.Validate(); err != nil {
		return nil, err
	}
	return ws, nil
}

// ParseWindow reads one maintenance window: optional days, then the local opening and closing
// times.
//
//	02:00-04:00                 every day
//	Mon-Fri 02:00-04:00         weekdays (a range runs forward and may wrap: Fri-Mon)
//	Sat,Sun 22:00-06:00         closes at 06:00 on the next day
//	mon,wednesday 00:00-24:00   names in any case, abbreviated or in full
//
// The closing time 00:00 (or 24:00) means midnight at the end of the opening day. Naming all
// seven days is the same as naming none. Errors wrap rampart.ErrInvalid.
func ParseWindow(s string) (Window, error) {
	if len(s) > maxWindowText {
		return Window{}, fmt.Errorf("window: %d bytes, at most %d: %w", len(s), maxWindowText, rampart.ErrInvalid)
	}
	fields := strings.Fields(s)
	var days, span string
	switch len(fields) {
	case 1:
		span = fields[0]
	case 2:
		days, span = fields[0], fields[1]
	default:
		return Window{}, fmt.Errorf("window %.60q: want [DAYS] HH:MM-HH:MM, like Mon-Fri 02:00-04:00: %w", s, rampart.ErrInvalid)
	}
	var w Window
	if days != "" {
		var err error
		if w.Days, err = parseDays(days); err != nil {
			return Window{}, fmt.Errorf("window %.60q: %w", s, err)
		}
	}
	from, to, ok := strings.Cut(span, "-")
	if !ok {
		return Window{}, fmt.Errorf("window %.60q: want a time span like 02:00-04:00: %w", s, rampart.ErrInvalid)
	}
	var err error
	if w.Start, err = parseClock(from); err != nil {
		return Window{}, fmt.Errorf("window %.60q: opens: %w", s, err)
	}
	if w.End, err = parseClock(to); err != nil {
		return Window{}, fmt.Errorf("window %.60q: closes: %w", s, err)
	}
	if w.End == 0 {
		w.End = 24 * time.Hour
	}
	if err := (Windows{w}).Validate(); err != nil {
		return Window{}, fmt.Errorf("window %.60q: %w", s, err)
	}
	return w, nil
}

// parseDays reads a comma-separated list of days and day ranges; it returns the days in
// Weekday order, each once, or nil for all seven.
func parseDays(s string) ([]time.Weekday, error) {
	var in [7]bool
	for _, part := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, err := parseDay(from)
		if err != nil {
			return nil, err
		}
		if !isRange {
			in[a] = true
			continue
		}
		b, err := parseDay(to)
		if err != nil {
			return nil, err
		}
		for d := a; ; d = (d + 1) % 7 {
			in[d] = true
			if d == b {
				break
			}
		}
	}
	var days []time.Weekday
	for d, ok := range in {
		if ok {
			days = append(days, time.Weekday(d))
		}
	}
	if len(days) == 7 {
		return nil, nil
	}
	return days, nil
}

func parseDay(s string) (time.Weekday, error) {
	for d, name := range dayNames {
		if strings.EqualFold(s, name) || strings.EqualFold(s, time.Weekday(d).String()) {
			return time.Weekday(d), nil
		}
	}
	return 0, fmt.Errorf("day %.20q: want Mon, Tue, Wed, Thu, Fri, Sat or Sun: %w", s, rampart.ErrInvalid)
}

// parseClock reads H:MM or HH:MM, from 00:00 to 24:00.
func parseClock(s string) (time.Duration, error) {
	hh, mm, ok := strings.Cut(s, ":")
	bad := fmt.Errorf("time %.20q: want HH:MM from 00:00 to 24:00: %w", s, rampart.ErrInvalid)
	if !ok || len(hh) < 1 || len(hh) > 2 || len(mm) != 2 || !digits(hh) || !digits(mm) {
		return 0, bad
	}
	h, _ := strconv.Atoi(hh)
	m, _ := strconv.Atoi(mm)
	if h > 24 || m > 59 || (h == 24 && m != 0) {
		return 0, bad
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
