package cbctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
)

// oneName checks that args is exactly one valid breaker name.
func oneName(cmd string, args []string) (string, error) {
	if len(args) != 1 {
		return "", usageErrorf("%s takes one breaker name, got %d arguments", cmd, len(args))
	}
	if err := breakerbox.ValidateName(args[0]); err != nil {
		return "", usageErrorf("%s: %v", cmd, err)
	}
	return args[0], nil
}

// requireKnown fails with ExitUnknownBreaker when no key of breaker name
// exists and the registry does not hold it, naming the breakers there are.
// openBreaker connects, bounds ctx by the command timeout and checks that
// breaker name exists; the caller defers cancel.
func (e *env) openBreaker(ctx context.Context, name string) (context.Context, context.CancelFunc, error) {
	if err := e.connect(); err != nil {
		return ctx, func() {}, err
	}
	ctx, cancel := e.withTimeout(ctx)
	if err := e.requireKnown(ctx, name); err != nil {
		cancel()
		return ctx, func() {}, err
	}
	return ctx, cancel, nil
}

func (e *env) requireKnown(ctx context.Context, name string) error {
	inRegistry, err := e.rdb.SIsMember(ctx, breakerbox.RegistryKey, name).Result()
	if err != nil {
		return e.explainRegistry(ctx, fmt.Errorf("look up breaker %q: %w", name, err))
	}
	if inRegistry {
		return nil
	}
	// The keys share the hash tag {name}: one EXISTS works on a cluster too.
	n, err := e.rdb.Exists(ctx, breakerbox.Key(name, "state"), breakerbox.Key(name, "metrics"),
		breakerbox.Key(name, "config")).Result()
	if err != nil {
		return fmt.Errorf("look up breaker %q: %w", name, err)
	}
	if n > 0 {
		return nil
	}
	msg := fmt.Sprintf("no breaker named %q in Redis at %s", name, e.shownURL)
	if names, err := admin.Names(ctx, e.rdb); err == nil {
		switch {
		case len(names) == 0:
			msg += " (it holds no breakers)"
		case len(names) <= 10:
			msg += " (known: " + strings.Join(names, ", ") + ")"
		default:
			msg += fmt.Sprintf(" (%d breakers; see cbctl list)", len(names))
		}
	}
	return &exitError{code: ExitUnknownBreaker, err: errors.New(msg)}
}

func (e *env) json(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runList(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return usageErrorf("list takes no arguments, got %q", args)
	}
	if err := e.connect(); err != nil {
		return err
	}
	ctx, cancel := e.withTimeout(ctx)
	defer cancel()
	sts, err := e.statuses(ctx, nil)
	if sts == nil {
		return err
	}
	if e.g.output == "json" {
		if jerr := e.json(sts); jerr != nil {
			return jerr
		}
		for _, st := range sts {
			e.warnCorrupt(ctx, st)
		}
		return err
	}
	if len(sts) == 0 && err == nil {
		fmt.Fprintf(e.stdout, "no breakers in Redis at %s\n", e.shownURL)
		return nil
	}
	writeTable(e.stdout, sts, nil)
	for _, st := range sts {
		e.warnCorrupt(ctx, st)
	}
	return err // the breakers that could not be read, after the others
}

// statuses reads the breakers named (nil: every breaker) in one pipeline.
// A breaker that cannot be read (say, a corrupted config) is left out and
// named in the error, with its fix, after the others are read.
func (e *env) statuses(ctx context.Context, names []string) ([]breakerbox.Status, error) {
	if names == nil {
		var err error
		if names, err = admin.Names(ctx, e.rdb); err != nil {
			return nil, e.explainRegistry(ctx, err)
		}
	}
	sts, err := admin.Statuses(ctx, e.rdb, names)
	return sts, e.explainStatuses(ctx, names, sts, err)
}

// listHeader and listRow form the table of list and watch.
const listHeader = "NAME\tSTATE\tMODE\tFAILURES\tSUCCESS\tWINDOW\tREQUESTS\tREFUSED\tOPENED AT\tLAST ERROR"

func listRow(st breakerbox.Status) string {
	return strings.Join([]string{st.Name, st.State.String(), string(st.Mode),
		fmt.Sprintf("%d/%d", st.CurrentFailures, st.FailureThreshold), successRate(st), windowRates(st),
		fmt.Sprint(st.TotalRequests), fmt.Sprint(st.TotalRefused), stamp(st.OpenedAt),
		oneLine(st.LastFailureError, 50)}, "\t")
}

// windowRates is the window in a few words: "140 calls 62.0% failed 3.1%
// slow" ("-" without a window).
func windowRates(st breakerbox.Status) string {
	if st.Window == 0 && st.WindowCalls == 0 {
		return "-"
	}
	s := fmt.Sprintf("%d calls %.1f%% failed", st.CallsInWindow, st.FailureRate)
	if st.SlowCallDuration > 0 {
		s += fmt.Sprintf(" %.1f%% slow", st.SlowCallRate)
	}
	return s
}

// writeTable writes sts as a table; marks, when given, prefixes each row
// (watch uses it to flag rows that changed).
func writeTable(w io.Writer, sts []breakerbox.Status, marks []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	prefix := func(i int) string {
		if marks == nil {
			return ""
		}
		if i < 0 {
			return " \t"
		}
		return marks[i] + "\t"
	}
	fmt.Fprintln(tw, prefix(-1)+listHeader)
	for i, st := range sts {
		fmt.Fprintln(tw, prefix(i)+listRow(st))
	}
	_ = tw.Flush()
}

func successRate(st breakerbox.Status) string {
	if st.TotalSuccesses+st.TotalFailures == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", st.SuccessRate)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// oneLine flattens s and cuts it to at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}

func runStatus(ctx context.Context, e *env, args []string) error {
	name, err := oneName("status", args)
	if err != nil {
		return err
	}
	ctx, cancel, err := e.openBreaker(ctx, name)
	if err != nil {
		return err
	}
	defer cancel()
	st, err := admin.Status(ctx, e.rdb, name)
	if err != nil {
		return e.explainBreaker(ctx, name, "", err)
	}
	defer e.warnCorrupt(ctx, st)
	if e.g.output == "json" {
		return e.json(st)
	}
	writeStatus(e.stdout, st)
	return nil
}

func writeStatus(w io.Writer, st breakerbox.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, k+":\t"+format+"\n", args...) }
	row("name", "%s", st.Name)
	row("state", "%s", st.State)
	row("mode", "%s", st.Mode)
	row("generation", "%d", st.Generation)
	row("failures", "%d/%d consecutive", st.CurrentFailures, st.FailureThreshold)
	switch {
	case st.RetryAfter < 0:
		row("retry after", "never (forced open: cbctl release or reset)")
	case st.RetryAfter > 0:
		row("retry after", "%s", st.RetryAfter)
	}
	if st.State == breakerbox.StateHalfOpen {
		row("probes", "%d held of %d, %d/%d successes", st.Probes, st.HalfOpenMaxCalls,
			st.HalfOpenSuccesses, st.SuccessThreshold)
	}
	row("opened at", "%s", stamp(st.OpenedAt))
	row("requests", "%d (successes %d, failures %d, refused %d)", st.TotalRequests,
		st.TotalSuccesses, st.TotalFailures, st.TotalRefused)
	row("success rate", "%s", successRate(st))
	if st.Window > 0 || st.WindowCalls > 0 {
		over := st.Window.String()
		if st.WindowCalls > 0 {
			over = fmt.Sprintf("the last %d calls", st.WindowCalls)
		}
		row("window", "%d calls over %s: %.1f%% failed, %.1f%% slow (%d failures, %d slow)", st.CallsInWindow, over,
			st.FailureRate, st.SlowCallRate, st.FailuresInWindow, st.SlowInWindow)
		var rules []string
		if st.FailureRateThreshold > 0 {
			rules = append(rules, fmt.Sprintf("%d%% failed", st.FailureRateThreshold))
		}
		if st.SlowCallRateThreshold > 0 {
			rules = append(rules, fmt.Sprintf("%d%% slow (%s or slower)", st.SlowCallRateThreshold, st.SlowCallDuration))
		}
		if len(rules) > 0 {
			row("opens at", "%s, with at least %d calls", strings.Join(rules, " or "), st.MinimumCalls)
		}
	}
	if st.CurrentRecoveryTimeout != st.RecoveryTimeout {
		row("recovery timeout", "%s (grown from %s by failed probes, %d%% a round, up to %s)", st.CurrentRecoveryTimeout,
			st.RecoveryTimeout, st.RecoveryBackoff, max(st.MaxRecoveryTimeout, st.RecoveryTimeout))
	}
	if !st.RetryUntil.IsZero() {
		row("retry until", "%s (the upstream's retry-after)", stamp(st.RetryUntil))
	}
	row("last failure", "%s", stamp(st.LastFailureTime))
	row("last error", "%s", oneLine(st.LastFailureError, 500))
	row("config", "failure_threshold=%d recovery_timeout=%s success_threshold=%d half_open_max_calls=%d request_timeout=%s",
		st.FailureThreshold, st.RecoveryTimeout, st.SuccessThreshold, st.HalfOpenMaxCalls, st.RequestTimeout)
	row("trip rules", "%s", tripRules(st))
	row("redis time", "%s", stamp(st.Time))
	_ = tw.Flush()
}

// tripRules is the config of the rules beside consecutive failures, in
// one line (cbctl config prints it whole).
func tripRules(st breakerbox.Status) string {
	cfg := st.Config()
	var parts []string
	for _, f := range breakerbox.ConfigFields() {
		if !f.Rule {
			continue
		}
		for i, all := 0, cfg.AllFields(); i+1 < len(all); i += 2 {
			if all[i] == f.Field && all[i+1] != strconv.FormatInt(f.Default, 10) {
				parts = append(parts, all[i]+"="+all[i+1])
			}
		}
	}
	if len(parts) == 0 {
		return "none (the defaults)"
	}
	return strings.Join(parts, " ")
}

func setupHistory(fs *flag.FlagSet) runFunc {
	n := fs.Int("n", 10, "how many events, newest first (at most 100)")
	return func(ctx context.Context, e *env, args []string) error { return runHistory(ctx, e, args, *n) }
}

func runHistory(ctx context.Context, e *env, args []string, n int) error {
	name, err := oneName("history", args)
	if err != nil {
		return err
	}
	if n < 1 || n > 100 {
		return usageErrorf("history -n %d: want 1 to 100 (the list keeps the last 100 events)", n)
	}
	ctx, cancel, err := e.openBreaker(ctx, name)
	if err != nil {
		return err
	}
	defer cancel()
	evs, err := admin.History(ctx, e.rdb, name, n)
	if err != nil {
		return e.explainBreaker(ctx, name, breakerbox.Key(name, "history"), err)
	}
	defer e.warnUnreadable(name, evs)
	if e.g.output == "json" {
		if evs == nil {
			evs = []breakerbox.Event{}
		}
		return e.json(evs)
	}
	if len(evs) == 0 {
		fmt.Fprintf(e.stdout, "breaker %q has no history yet\n", name)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tEVENT\tFROM\tTO\tGEN\tACTOR\tERROR\tDETAIL")
	for _, ev := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", stamp(ev.Time), ev.Event, dash(ev.From),
			dash(ev.To), ev.Generation, dash(ev.Actor), oneLine(ev.Error, 50), oneLine(ev.Detail, 60))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// actionNoun names an action in a sentence ("the reset repaired ...").
var actionNoun = map[breakerbox.Action]string{
	breakerbox.ActionReset: "the reset", breakerbox.ActionForceOpen: "the forced open",
	breakerbox.ActionDisable: "disabling", breakerbox.ActionRelease: "the release",
}

var actionPast = map[breakerbox.Action]string{
	breakerbox.ActionReset: "reset", breakerbox.ActionForceOpen: "forced open",
	breakerbox.ActionDisable: "disabled", breakerbox.ActionRelease: "released",
}

func runAction(cmd string, a breakerbox.Action) runFunc {
	return func(ctx context.Context, e *env, args []string) error {
		name, err := oneName(cmd, args)
		if err != nil {
			return err
		}
		ctx, cancel, err := e.openBreaker(ctx, name)
		if err != nil {
			return err
		}
		defer cancel()
		before, err := admin.Status(ctx, e.rdb, name)
		if err != nil {
			return e.explainBreaker(ctx, name, "", err)
		}
		found := e.problems(ctx, before) // described now: the action may delete the keys
		st, err := admin.Control(ctx, e.rdb, name, a, e.actor())
		if err != nil {
			return e.explainBreaker(ctx, name, "", err)
		}
		defer e.reportRepairs(ctx, actionNoun[a], found, st)
		if e.g.output == "json" {
			return e.json(st)
		}
		if a == breakerbox.ActionRelease && before.Mode == breakerbox.ModeNormal {
			fmt.Fprintf(e.stdout, "breaker %q: nothing to release (not forced open or disabled); still %s\n", name, st.State)
			return nil
		}
		fmt.Fprintf(e.stdout, "breaker %q %s by %s: %s -> %s (mode %s, generation %d)\n",
			name, actionPast[a], e.actor(), before.State, st.State, st.Mode, st.Generation)
		return nil
	}
}

// scriptInfo is one line of cbctl scripts.
type scriptInfo struct {
	Name    string `json:"name"`
	File    string `json:"file"`
	Keys    int    `json:"keys"`
	SHA1    string `json:"sha1"`
	Loaded  bool   `json:"loaded"`
	Servers int    `json:"servers,omitempty"` // servers (masters of a cluster) that hold it
}

func setupScripts(fs *flag.FlagSet) runFunc {
	noLoad := fs.Bool("no-load", false, "only print; do not connect to Redis")
	return func(ctx context.Context, e *env, args []string) error { return runScripts(ctx, e, args, *noLoad) }
}

func runScripts(ctx context.Context, e *env, args []string, noLoad bool) error {
	if len(args) != 0 {
		return usageErrorf("scripts takes no arguments, got %q", args)
	}
	var infos []scriptInfo
	for _, s := range breakerbox.Scripts() {
		infos = append(infos, scriptInfo{Name: s.Name, File: s.File, Keys: s.Keys, SHA1: s.SHA1})
	}
	if !noLoad {
		if err := e.connect(); err != nil {
			return err
		}
		ctx, cancel := e.withTimeout(ctx)
		defer cancel()
		for i, s := range breakerbox.Scripts() {
			sha, err := s.Load(ctx, e.rdb)
			if err != nil {
				return fmt.Errorf("SCRIPT LOAD %s: %w", s.File, err)
			}
			// A server without shebangs holds a read-only script by its body's SHA1.
			if sha != s.SHA1 && sha != s.BodySHA1 {
				return fmt.Errorf("SCRIPT LOAD %s: server says SHA1 %s, want %s", s.File, sha, s.SHA1)
			}
			n, err := serversHolding(ctx, e.rdb, sha)
			if err != nil {
				return fmt.Errorf("SCRIPT EXISTS %s: %w", s.File, err)
			}
			infos[i].Loaded, infos[i].Servers = true, n
		}
	}
	if e.g.output == "json" {
		return e.json(infos)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFILE\tKEYS\tSHA1\tLOADED")
	for _, in := range infos {
		loaded := "not loaded (--no-load)"
		if in.Loaded {
			loaded = fmt.Sprintf("yes, on %d server(s)", in.Servers)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", in.Name, in.File, in.Keys, in.SHA1, loaded)
	}
	return tw.Flush()
}

// serversHolding counts the servers that have the script cached: every
// master of a cluster, or the one server.
func serversHolding(ctx context.Context, rdb redis.UniversalClient, sha string) (int, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		got, err := rdb.ScriptExists(ctx, sha).Result()
		if err != nil {
			return 0, err
		}
		if len(got) != 1 || !got[0] {
			return 0, fmt.Errorf("script %s missing right after SCRIPT LOAD", sha)
		}
		return 1, nil
	}
	var addrs []string
	var mu sync.Mutex // ForEachMaster runs the function concurrently
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		got, err := c.ScriptExists(ctx, sha).Result()
		if err != nil {
			return fmt.Errorf("%s: %w", c.Options().Addr, err)
		}
		if len(got) != 1 || !got[0] {
			return fmt.Errorf("%s: script %s missing right after SCRIPT LOAD", c.Options().Addr, sha)
		}
		mu.Lock()
		addrs = append(addrs, c.Options().Addr)
		mu.Unlock()
		return nil
	})
	sort.Strings(addrs)
	return len(addrs), err
}
