package cbctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
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
const listHeader = "NAME\tSTATE\tMODE\tFAILURES\tSUCCESS\tREQUESTS\tREFUSED\tOPENED AT\tLAST ERROR"

func listRow(st breakerbox.Status) string {
	return strings.Join([]string{st.Name, st.State.String(), string(st.Mode),
		fmt.Sprintf("%d/%d", st.CurrentFailures, st.FailureThreshold), successRate(st),
		fmt.Sprint(st.TotalRequests), fmt.Sprint(st.TotalRefused), stamp(st.OpenedAt),
		oneLine(st.LastFailureError, 50)}, "\t")
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
	row("last failure", "%s", stamp(st.LastFailureTime))
	row("last error", "%s", oneLine(st.LastFailureError, 500))
	row("config", "failure_threshold=%d recovery_timeout=%s success_threshold=%d half_open_max_calls=%d request_timeout=%s",
		st.FailureThreshold, st.RecoveryTimeout, st.SuccessThreshold, st.HalfOpenMaxCalls, st.RequestTimeout)
	row("redis time", "%s", stamp(st.Time))
	_ = tw.Flush()
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

// configFlags are the fields config may change.
type configFlags struct {
	failureThreshold, successThreshold, halfOpenMaxCalls int
	recoveryTimeout, requestTimeout                      time.Duration
}

func (c *configFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&c.failureThreshold, "failure-threshold", 0, "consecutive failures that open the breaker")
	fs.DurationVar(&c.recoveryTimeout, "recovery-timeout", 0, "how long the breaker stays open before probing")
	fs.IntVar(&c.successThreshold, "success-threshold", 0, "probe successes that close a half-open breaker")
	fs.IntVar(&c.halfOpenMaxCalls, "half-open-max-calls", 0, "probes admitted at once across the fleet")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 0, "bound on a protected call; a probe lease's lifetime")
}

// configView is the shared config as config prints it.
type configView struct {
	Name              string   `json:"name"`
	FailureThreshold  int64    `json:"failure_threshold"`
	RecoveryTimeoutMs int64    `json:"recovery_timeout_ms"`
	SuccessThreshold  int64    `json:"success_threshold"`
	HalfOpenMaxCalls  int64    `json:"half_open_max_calls"`
	RequestTimeoutMs  int64    `json:"request_timeout_ms"`
	Changed           []string `json:"changed,omitempty"`
}

func viewOf(st breakerbox.Status) configView {
	return configView{Name: st.Name, FailureThreshold: st.FailureThreshold,
		RecoveryTimeoutMs: st.RecoveryTimeout.Milliseconds(), SuccessThreshold: st.SuccessThreshold,
		HalfOpenMaxCalls: st.HalfOpenMaxCalls, RequestTimeoutMs: st.RequestTimeout.Milliseconds()}
}

func (v configView) diff(old configView) []string {
	var out []string
	add := func(field string, a, b int64) {
		if a != b {
			out = append(out, fmt.Sprintf("%s %d -> %d", field, b, a))
		}
	}
	add("failure_threshold", v.FailureThreshold, old.FailureThreshold)
	add("recovery_timeout_ms", v.RecoveryTimeoutMs, old.RecoveryTimeoutMs)
	add("success_threshold", v.SuccessThreshold, old.SuccessThreshold)
	add("half_open_max_calls", v.HalfOpenMaxCalls, old.HalfOpenMaxCalls)
	add("request_timeout_ms", v.RequestTimeoutMs, old.RequestTimeoutMs)
	return out
}

func setupConfig(fs *flag.FlagSet) runFunc {
	var c configFlags
	c.register(fs)
	return func(ctx context.Context, e *env, args []string) error {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		return runConfig(ctx, e, args, &c, set)
	}
}

func runConfig(ctx context.Context, e *env, args []string, c *configFlags, set map[string]bool) error {
	name, err := oneName("config", args)
	if err != nil {
		return err
	}
	ctx, cancel, err := e.openBreaker(ctx, name)
	if err != nil {
		return err
	}
	defer cancel()
	changing := set["failure-threshold"] || set["recovery-timeout"] || set["success-threshold"] ||
		set["half-open-max-calls"] || set["request-timeout"]
	st, err := admin.Status(ctx, e.rdb, name)
	if err != nil && changing && errors.Is(err, breakerbox.ErrBadConfig) {
		// The stored config holds an invalid value: start from the hash
		// itself, and insist that the flags replace every invalid field.
		st, err = e.repairBase(ctx, name, set, err)
	}
	if err != nil {
		return e.explainBreaker(ctx, name, "", err)
	}
	before := viewOf(st)
	found := e.problems(ctx, st) // described now: the change may delete the keys
	if !changing {
		defer e.warnCorrupt(ctx, st)
		if e.g.output == "json" {
			return e.json(before)
		}
		writeConfig(e.stdout, before)
		return nil
	}
	cfg := st.Config()
	if set["failure-threshold"] {
		cfg.FailureThreshold = c.failureThreshold
	}
	if set["recovery-timeout"] {
		cfg.RecoveryTimeout = c.recoveryTimeout
	}
	if set["success-threshold"] {
		// A half_open_max_calls equal to success_threshold follows it, as
		// the default does, unless it is given too.
		if !set["half-open-max-calls"] && st.HalfOpenMaxCalls == st.SuccessThreshold {
			cfg.HalfOpenMaxCalls = 0
		}
		cfg.SuccessThreshold = c.successThreshold
	}
	if set["half-open-max-calls"] {
		cfg.HalfOpenMaxCalls = c.halfOpenMaxCalls
		if cfg.HalfOpenMaxCalls < 1 {
			return usageErrorf("--half-open-max-calls %d: want at least 1", cfg.HalfOpenMaxCalls)
		}
	}
	// A zero Config field means its default; a flag given as 0 is a mistake.
	for _, f := range []struct {
		flag, field string
		zero        bool
	}{{"failure-threshold", "FailureThreshold", cfg.FailureThreshold < 1},
		{"success-threshold", "SuccessThreshold", cfg.SuccessThreshold < 1},
		{"recovery-timeout", "RecoveryTimeout", cfg.RecoveryTimeout <= 0},
		{"request-timeout", "RequestTimeout", cfg.RequestTimeout <= 0}} {
		if set[f.flag] && f.zero {
			return usageErrorf("config %s: --%s: %s want at least 1 (1ms for a timeout)", name, f.flag, f.field)
		}
	}
	if err := cfg.Validate(); err != nil {
		return usageErrorf("config %s: %v", name, err)
	}
	if cfg.RecoveryTimeout%time.Millisecond != 0 || cfg.RequestTimeout%time.Millisecond != 0 {
		return usageErrorf("config %s: timeouts are stored in whole milliseconds", name)
	}
	if _, err := admin.Configure(ctx, e.rdb, name, cfg, e.actor()); err != nil {
		return e.explainBreaker(ctx, name, "", err)
	}
	st, err = admin.Status(ctx, e.rdb, name)
	if err != nil {
		return e.explainBreaker(ctx, name, "", err)
	}
	defer e.reportRepairs(ctx, "the config change", found, st)
	after := viewOf(st)
	after.Changed = after.diff(before)
	if e.g.output == "json" {
		if after.Changed == nil {
			after.Changed = []string{}
		}
		return e.json(after)
	}
	if len(after.Changed) == 0 {
		fmt.Fprintf(e.stdout, "breaker %q: config unchanged\n", name)
	} else {
		fmt.Fprintf(e.stdout, "breaker %q: config changed by %s: %s\n", name, e.actor(), strings.Join(after.Changed, ", "))
	}
	writeConfig(e.stdout, after)
	fmt.Fprintln(e.stdout, "note: a worker that starts with a different config writes its own on its first call")
	return nil
}

// fieldFlags maps the config hash's fields to the flags that set them.
var fieldFlags = map[string]string{
	"failure_threshold": "failure-threshold", "recovery_timeout_ms": "recovery-timeout",
	"success_threshold": "success-threshold", "half_open_max_calls": "half-open-max-calls",
	"request_timeout_ms": "request-timeout",
}

// repairBase reads the config hash of a breaker whose stored config is
// invalid (readErr) and returns it as a Status holding the valid fields
// (defaults for absent ones). Every invalid field must be replaced by a
// flag in set, or it is a usage error naming the flags needed.
func (e *env) repairBase(ctx context.Context, name string, set map[string]bool, readErr error) (breakerbox.Status, error) {
	raw, err := e.rdb.HGetAll(ctx, breakerbox.Key(name, "config")).Result()
	if err != nil {
		return breakerbox.Status{}, fmt.Errorf("%w (reading the config hash: %v; if it is not a hash, "+
			"redis-cli DEL 'circuit_breaker:{%s}:config' and set the config again)", readErr, err, name)
	}
	cfg, invalid := breakerbox.ConfigFromFields(raw)
	var missing []string
	for _, field := range invalid {
		if flagName := fieldFlags[field]; !set[flagName] {
			missing = append(missing, fmt.Sprintf("--%s (%s holds %q)", flagName, field, raw[field]))
		}
	}
	if len(missing) > 0 {
		return breakerbox.Status{}, usageErrorf("breaker %q has an invalid stored config; give %s to repair it",
			name, strings.Join(missing, ", "))
	}
	if cfg.HalfOpenMaxCalls == 0 {
		cfg.HalfOpenMaxCalls = cfg.SuccessThreshold
	}
	return breakerbox.Status{Name: name, FailureThreshold: int64(cfg.FailureThreshold),
		RecoveryTimeout: cfg.RecoveryTimeout, SuccessThreshold: int64(cfg.SuccessThreshold),
		HalfOpenMaxCalls: int64(cfg.HalfOpenMaxCalls), RequestTimeout: cfg.RequestTimeout}, nil
}

func writeConfig(w io.Writer, v configView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "failure_threshold:\t%d\n", v.FailureThreshold)
	fmt.Fprintf(tw, "recovery_timeout:\t%s\n", time.Duration(v.RecoveryTimeoutMs)*time.Millisecond)
	fmt.Fprintf(tw, "success_threshold:\t%d\n", v.SuccessThreshold)
	fmt.Fprintf(tw, "half_open_max_calls:\t%d\n", v.HalfOpenMaxCalls)
	fmt.Fprintf(tw, "request_timeout:\t%s\n", time.Duration(v.RequestTimeoutMs)*time.Millisecond)
	_ = tw.Flush()
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
