package conformance

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
)

var (
	flagTrials = flag.Int("trials", envInt("BREAKERBOX_TRIALS", 2), "concurrency trials on real Redis (env BREAKERBOX_TRIALS)")
	flagScale  = flag.Int64("scale", int64(envInt("BREAKERBOX_CONFORMANCE_SCALE", 20)), "real ms per vector ms for timed vectors on real clocks (env BREAKERBOX_CONFORMANCE_SCALE)")
)

// TestMain runs worker processes (when re-executed by the concurrency
// test) or the tests, then prints vectors passed per engine.
func TestMain(m *testing.M) {
	if spec := os.Getenv(workerEnv); spec != "" {
		os.Exit(workerMain(spec))
	}
	flag.Parse()
	// The model test's 100 default checks take ~20s under -race on two
	// cores; run 25 unless asked for more (-rapid.checks=N or RAPID_CHECKS).
	explicit := os.Getenv("RAPID_CHECKS") != ""
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "rapid.checks" })
	if !explicit {
		_ = flag.Set("rapid.checks", "25")
	}
	code := m.Run()
	if table := summary.table(); table != "" {
		fmt.Print(table)
		if path := os.Getenv("BREAKERBOX_CONFORMANCE_SUMMARY"); path != "" {
			if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "write summary: %v\n", err)
			}
		}
	}
	os.Exit(code)
}

// tally counts vector results per engine for the table printed at the end.
type tally struct {
	mu      sync.Mutex
	engines []string
	counts  map[string]*counts
	notes   []string
}

type counts struct{ passed, failed, knownBug, total int }

var summary = &tally{counts: map[string]*counts{}}

func (s *tally) add(engine string, passed, knownBug bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.counts[engine]
	if !ok {
		c = &counts{}
		s.counts[engine] = c
		s.engines = append(s.engines, engine)
	}
	c.total++
	switch {
	case passed:
		c.passed++
	case knownBug:
		c.knownBug++
	default:
		c.failed++
	}
}

func (s *tally) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := fmt.Sprintf(format, args...)
	for _, old := range s.notes {
		if old == n {
			return
		}
	}
	s.notes = append(s.notes, n)
}

func (s *tally) table() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.engines) == 0 && len(s.notes) == 0 {
		return ""
	}
	var b strings.Builder
	order := map[string]int{"gopher-lua": 0, "miniredis": 1, "redis": 2, "cluster": 3, "python": 4}
	engines := append([]string(nil), s.engines...)
	sort.SliceStable(engines, func(i, j int) bool { return order[engines[i]] < order[engines[j]] })
	b.WriteString("\n")
	if len(engines) > 0 {
		fmt.Fprintf(&b, "conformance: vectors per engine\n%-12s %7s %7s %10s %7s\n", "engine", "passed", "failed", "known-bug", "total")
	}
	for _, e := range engines {
		c := s.counts[e]
		fmt.Fprintf(&b, "%-12s %7d %7d %10d %7d\n", e, c.passed, c.failed, c.knownBug, c.total)
	}
	for _, n := range s.notes {
		fmt.Fprintf(&b, "%s\n", n)
	}
	return b.String()
}

func envInt(name string, def int) int {
	var n int
	if _, err := fmt.Sscan(os.Getenv(name), &n); err == nil && n > 0 {
		return n
	}
	return def
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
