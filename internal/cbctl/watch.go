package cbctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
)

func setupWatch(fs *flag.FlagSet) runFunc {
	interval := fs.Duration("interval", time.Second, "time between refreshes")
	count := fs.Int("count", 0, "stop after this many refreshes (0: until interrupted)")
	return func(ctx context.Context, e *env, args []string) error {
		return runWatch(ctx, e, args, *interval, *count)
	}
}

// keptTransitions is how many transitions the text display keeps below the table.
const keptTransitions = 10

// transition is one change of a breaker seen by watch.
type transition struct {
	Time       time.Time `json:"time"`
	Name       string    `json:"name"`
	Event      string    `json:"event"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	Generation int64     `json:"generation"`
	Actor      string    `json:"actor,omitempty"`
	Error      string    `json:"error,omitempty"`
	Rule       string    `json:"rule,omitempty"` // an opening's trip rule
}

// frame is one refresh of watch.
type frame struct {
	Time        time.Time           `json:"time"`
	Refresh     int                 `json:"refresh"`
	Breakers    []breakerbox.Status `json:"breakers"`
	Transitions []transition        `json:"transitions"` // seen in this refresh, oldest first
	Error       string              `json:"error,omitempty"`
	// Problems explains each corrupted key of the breakers shown (their
	// Status.Corrupt): which key, what is wrong, how to fix it.
	Problems []string `json:"problems,omitempty"`

	changed map[string]string // name -> mark ("*" changed, "+" new) in this refresh
}

// watcher keeps what watch needs between refreshes.
type watcher struct {
	e      *env
	names  []string // nil: every breaker
	prev   map[string]breakerbox.Status
	recent []transition // the last keptTransitions, oldest first
	n      int
	color  bool
	redraw bool
	out    io.Writer
	every  time.Duration
}

func runWatch(ctx context.Context, e *env, args []string, interval time.Duration, count int) error {
	if interval < time.Millisecond {
		return usageErrorf("watch --interval %s: want at least 1ms", interval)
	}
	if count < 0 {
		return usageErrorf("watch --count %d: want 0 (forever) or more", count)
	}
	for _, n := range args {
		if err := breakerbox.ValidateName(n); err != nil {
			return usageErrorf("watch: %v", err)
		}
	}
	if err := e.connect(); err != nil {
		return err
	}
	w := &watcher{e: e, names: args, out: e.stdout, every: interval}
	if isTerminal(e.stdout) {
		w.redraw = true
		w.color = !e.g.noColor && e.getenv("NO_COLOR") == ""
	}
	if len(args) > 0 {
		cctx, cancel := e.withTimeout(ctx)
		for _, n := range args {
			if err := e.requireKnown(cctx, n); err != nil {
				cancel()
				return err
			}
		}
		cancel()
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for i := 1; ; i++ {
		f, err := w.refresh(ctx)
		if ctx.Err() != nil {
			return nil // interrupted: a normal end of watch
		}
		if err != nil && i == 1 && len(f.Breakers) == 0 {
			return err // nothing to show: fail with the right exit code
		}
		if err := w.render(f); err != nil {
			return err
		}
		if count > 0 && i >= count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// unjoin returns the errors errors.Join joined, or err alone.
func unjoin(err error) []error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		return joined.Unwrap()
	}
	return []error{err}
}

// refresh reads the breakers and works out what changed since the last refresh.
func (w *watcher) refresh(ctx context.Context) (frame, error) {
	ctx, cancel := w.e.withTimeout(ctx)
	defer cancel()
	w.n++
	f := frame{Time: time.Now().UTC(), Refresh: w.n, Breakers: []breakerbox.Status{}, Transitions: []transition{},
		changed: map[string]string{}}
	sts, err := w.e.statuses(ctx, w.names)
	if err != nil {
		// Breakers refused for a corrupted key are listed with the others'
		// corrupted keys; anything else is the frame's error.
		var rest []string
		for _, one := range unjoin(err) {
			var ce *corruptError
			if errors.As(one, &ce) {
				f.Problems = append(f.Problems, w.e.scrub(ce.msg))
			} else {
				rest = append(rest, w.e.scrub(strings.ReplaceAll(one.Error(), "\n", "; ")))
			}
		}
		f.Error = strings.Join(rest, "; ")
	}
	if sts == nil {
		return f, err
	}
	f.Breakers = sts
	for _, st := range sts {
		for _, p := range w.e.problems(ctx, st) {
			f.Problems = append(f.Problems, p.String())
		}
	}
	first := w.prev == nil
	next := make(map[string]breakerbox.Status, len(sts))
	for _, st := range sts {
		next[st.Name] = st
		old, seen := w.prev[st.Name]
		switch {
		case first:
		case !seen:
			f.changed[st.Name] = "+"
		case old.Generation != st.Generation:
			f.changed[st.Name] = "*"
			f.Transitions = append(f.Transitions, w.transitions(ctx, old, st)...)
		}
	}
	w.prev = next
	w.recent = append(w.recent, f.Transitions...)
	if len(w.recent) > keptTransitions {
		w.recent = w.recent[len(w.recent)-keptTransitions:]
	}
	return f, err
}

// transitions returns the events that took old to now, oldest first, from
// the breaker's history; when the history cannot tell (trimmed, deleted
// keys), one summary transition.
func (w *watcher) transitions(ctx context.Context, old, now breakerbox.Status) []transition {
	var out []transition
	if delta := now.Transitions - old.Transitions; now.Generation > old.Generation {
		// Config changes share the list without moving the generation: read a few more.
		evs, err := admin.History(ctx, w.e.rdb, now.Name, int(min(max(delta, 1), 20))+5)
		if err == nil {
			for _, ev := range evs {
				if ev.Generation > old.Generation && ev.Generation <= now.Generation && ev.Event != "config_changed" {
					tr := transition{Time: ev.Time, Name: now.Name, Event: ev.Event, From: ev.From,
						To: ev.To, Generation: ev.Generation, Actor: ev.Actor, Error: ev.Error}
					if ev.Event == "opened" {
						tr.Rule = ev.Detail
					}
					out = append(out, tr)
				}
			}
		}
		slices.Reverse(out)
	}
	if len(out) == 0 {
		out = append(out, transition{Time: now.Time, Name: now.Name, Event: "changed", From: old.State.String(),
			To: now.State.String(), Generation: now.Generation})
	}
	return out
}

const (
	ansiClear   = "\x1b[H\x1b[2J"
	ansiReset   = "\x1b[0m"
	ansiBold    = "\x1b[1m"
	ansiReverse = "\x1b[7m"
	ansiRed     = "\x1b[31m"
	ansiYellow  = "\x1b[33m"
	ansiGreen   = "\x1b[32m"
	ansiDim     = "\x1b[2m"
)

func stateColor(s breakerbox.State, m breakerbox.Mode) string {
	switch {
	case s == breakerbox.StateOpen:
		return ansiRed
	case s == breakerbox.StateHalfOpen:
		return ansiYellow
	case m == breakerbox.ModeDisabled:
		return ansiDim
	}
	return ansiGreen
}

// render writes one frame: a JSON line with -o json; otherwise a table
// (redrawn in place on a terminal) with the latest transitions below it.
func (w *watcher) render(f frame) error {
	if w.e.g.output == "json" {
		b, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("watch: encode frame: %w", err)
		}
		_, err = fmt.Fprintf(w.out, "%s\n", b)
		return err
	}
	var buf bytes.Buffer
	if w.redraw {
		buf.WriteString(ansiClear)
	} else if f.Refresh > 1 {
		buf.WriteString("\n")
	}
	fmt.Fprintf(&buf, "cbctl watch  %s  every %s  refresh %d  %s\n", w.e.shownURL, w.every, f.Refresh, stamp(f.Time))
	if f.Error != "" {
		line := "error: " + f.Error + " (still trying)"
		if w.color {
			line = ansiRed + line + ansiReset
		}
		buf.WriteString(line + "\n")
	}
	sts := f.Breakers
	if f.Error != "" && len(sts) == 0 {
		sts = nil
		for _, st := range w.prev {
			sts = append(sts, st)
		}
		slices.SortFunc(sts, func(a, b breakerbox.Status) int { return strings.Compare(a.Name, b.Name) })
	}
	if len(sts) == 0 && f.Error == "" && len(f.Problems) == 0 {
		buf.WriteString("no breakers\n")
	} else if len(sts) > 0 {
		marks := make([]string, len(sts))
		for i, st := range sts {
			marks[i] = f.changed[st.Name]
			if marks[i] == "" {
				marks[i] = " "
			}
		}
		var table bytes.Buffer
		writeTable(&table, sts, marks)
		lines := strings.Split(strings.TrimSuffix(table.String(), "\n"), "\n")
		for i, line := range lines {
			if w.color && i > 0 {
				st := sts[i-1]
				pre := stateColor(st.State, st.Mode)
				if marks[i-1] != " " {
					pre += ansiBold + ansiReverse
				}
				line = pre + line + ansiReset
			} else if w.color {
				line = ansiBold + line + ansiReset
			}
			buf.WriteString(line + "\n")
		}
	}
	if len(f.Problems) > 0 {
		buf.WriteString("\ncorrupted keys:\n")
		for _, p := range f.Problems {
			if w.color {
				p = ansiRed + p + ansiReset
			}
			buf.WriteString("!  " + p + "\n")
		}
	}
	if len(w.recent) > 0 {
		buf.WriteString("\ntransitions (newest last):\n")
		fresh := len(w.recent) - len(f.Transitions)
		var log bytes.Buffer
		tw := tabwriter.NewWriter(&log, 0, 0, 2, ' ', 0)
		for i, t := range w.recent {
			mark := " "
			if i >= fresh {
				mark = "*"
			}
			extra := ""
			if t.Actor != "" {
				extra += "by " + t.Actor
			}
			if t.Rule != "" {
				extra = strings.TrimSpace(extra + "  " + t.Rule)
			}
			if t.Error != "" {
				extra = strings.TrimSpace(extra + "  error: " + oneLine(t.Error, 60))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s -> %s\t%s\tgen %d\t%s\n", mark, stamp(t.Time), t.Name,
				dash(t.From), dash(t.To), t.Event, t.Generation, extra)
		}
		_ = tw.Flush()
		for i, line := range strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n") {
			if w.color && i >= fresh {
				line = ansiBold + line + ansiReset
			}
			buf.WriteString(strings.TrimRight(line, " ") + "\n")
		}
	}
	_, err := w.out.Write(buf.Bytes())
	if err != nil {
		return fmt.Errorf("watch: write: %w", err)
	}
	return nil
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeCharDevice != 0
}
