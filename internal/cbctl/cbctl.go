// Package cbctl is the logic of the cbctl command: inspect and operate the
// breakers that breakerbox keeps in Redis. cmd/cbctl only calls Run.
//
// Every command connects through --redis-url or REDIS_URL (a redis:// or
// rediss:// URL; addr= query parameters name the nodes of a Redis Cluster)
// and exits with one of the Exit* codes, so shell scripts can rely on them.
package cbctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/redisurl"
)

// Exit codes of cbctl.
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitError: any other failure (a script error, a bad reply, ...).
	ExitError = 1
	// ExitUsage: unknown command or flag, missing or extra argument, bad value.
	ExitUsage = 2
	// ExitUnknownBreaker: no breaker of that name in Redis.
	ExitUnknownBreaker = 3
	// ExitUnreachable: Redis could not be reached (refused, timed out, DNS, TLS).
	ExitUnreachable = 4
	// ExitAuth: Redis refused the credentials or the ACL user lacks a
	// permission (NOAUTH, WRONGPASS, NOPERM).
	ExitAuth = 5
)

// exitError carries an exit code with the message to print.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// errHelp is returned when help was asked for: usage goes to stdout, exit 0.
var errHelp = errors.New("help requested")

// globals are the flags every command accepts.
type globals struct {
	redisURL string
	output   string
	timeout  time.Duration
	actor    string
	noColor  bool
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.redisURL, "redis-url", g.redisURL, "Redis URL (default $REDIS_URL, else "+redisurl.Default+")")
	fs.StringVar(&g.output, "o", g.output, "output format: text or json")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "bound on each command's Redis work (watch: on each refresh)")
	fs.StringVar(&g.actor, "actor", g.actor, "who acts, written to the breaker's history (default cbctl:$USER@HOST)")
	fs.BoolVar(&g.noColor, "no-color", g.noColor, "watch: no colours even on a terminal (NO_COLOR does the same)")
}

// env gives a command what it needs besides its own flags.
type env struct {
	g      *globals
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	rdb      redis.UniversalClient
	shownURL string   // the URL with any password replaced
	password string   // to scrub from messages
	secrets  []string // more passwords to scrub (a Sentinel URL has two)
}

// Run runs cbctl with args (without the program name) and returns the exit
// code. getenv reads the environment (os.Getenv in main; a map in tests).
//
// Run silences go-redis's own logger (process-wide): its dial retries would
// repeat on stderr what cbctl reports once, with its exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	quietRedis.Do(func() { redis.SetLogger(silentLogger{}) })
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	e := &env{g: &globals{output: "text", timeout: 10 * time.Second}, stdout: stdout, stderr: stderr, getenv: getenv}
	defer func() {
		if e.rdb == nil {
			return
		}
		// A Sentinel client whose sentinels are unreachable takes over a
		// second to close (go-redis); cbctl is about to exit, so it waits
		// for the close only briefly.
		closed := make(chan struct{})
		go func() {
			_ = e.rdb.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(100 * time.Millisecond):
		}
	}()
	err := e.run(ctx, args)
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, errHelp) {
		return ExitOK
	}
	code := e.classify(err)
	fmt.Fprintln(stderr, "cbctl: "+e.scrub(e.explain(code, err)))
	if code == ExitUsage {
		fmt.Fprintln(stderr, "Run 'cbctl help' for usage.")
	}
	return code
}

var quietRedis sync.Once

// silentLogger drops go-redis's internal log lines.
type silentLogger struct{}

func (silentLogger) Printf(context.Context, string, ...any) {}

// command is one cbctl subcommand.
type command struct {
	name  string
	args  string // positional arguments, for usage
	short string
	// setup registers the command's own flags and returns its body.
	setup func(fs *flag.FlagSet) runFunc
}

// runFunc runs a command with its positional arguments.
type runFunc func(ctx context.Context, e *env, args []string) error

// noFlags is the setup of a command without flags of its own.
func noFlags(run runFunc) func(*flag.FlagSet) runFunc {
	return func(*flag.FlagSet) runFunc { return run }
}

func commands() []*command {
	return []*command{
		{name: "list", short: "every breaker: state, failures/threshold, success rate, last error, opened at", setup: noFlags(runList)},
		{name: "status", args: "NAME", short: "one breaker's full snapshot", setup: noFlags(runStatus)},
		{name: "history", args: "NAME [-n 10]", short: "a breaker's latest events, newest first", setup: setupHistory},
		{name: "reset", args: "NAME", short: "force closed, clear consecutive counts, lift open/disable", setup: noFlags(runAction("reset", breakerbox.ActionReset))},
		{name: "open", args: "NAME", short: "force open: refuse every call until release or reset", setup: noFlags(runAction("open", breakerbox.ActionForceOpen))},
		{name: "disable", args: "NAME", short: "admit every call (still counted), never open, until release or reset", setup: noFlags(runAction("disable", breakerbox.ActionDisable))},
		{name: "release", args: "NAME", short: "end open (to half_open, probes first) or disable (to closed)", setup: noFlags(runAction("release", breakerbox.ActionRelease))},
		{name: "config", args: "NAME [--failure-threshold N ...]", short: "print the shared config; with flags, change those fields only", setup: setupConfig},
		{name: "watch", args: "[NAME...] [--interval 1s] [--count N]", short: "live table of breakers, transitions highlighted as they happen", setup: setupWatch},
		{name: "scripts", args: "[--no-load]", short: "each script's name, key count and SHA1; SCRIPT LOAD them (every master of a cluster)", setup: setupScripts},
	}
}

func (e *env) run(ctx context.Context, args []string) error {
	// Global flags may come before the command ...
	top := flag.NewFlagSet("cbctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	e.g.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			e.usage(e.stdout)
			return errHelp
		}
		return usageErrorf("%v", err)
	}
	rest := top.Args()
	if len(rest) == 0 {
		e.usage(e.stderr)
		return &exitError{code: ExitUsage, err: errors.New("no command given")}
	}
	name := rest[0]
	if name == "help" || name == "-h" || name == "--help" {
		e.usage(e.stdout)
		return errHelp
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		return usageErrorf("unknown command %q", name)
	}
	// ... or anywhere after it.
	fs := flag.NewFlagSet("cbctl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.g.register(fs)
	run := cmd.setup(fs)
	pos, err := parseInterspersed(fs, rest[1:])
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(e.stdout, "usage: cbctl %s %s\n  %s\n\nflags:\n", cmd.name, cmd.args, cmd.short)
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		return errHelp
	}
	if err != nil {
		return usageErrorf("%s: %v", name, err)
	}
	if e.g.output != "text" && e.g.output != "json" {
		return usageErrorf("-o %q: want text or json", e.g.output)
	}
	if e.g.timeout <= 0 {
		return usageErrorf("--timeout %s: want > 0", e.g.timeout)
	}
	return run(ctx, e, pos)
}

// parseInterspersed parses flags that may appear before, between or after
// positional arguments and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// connect builds the Redis client from --redis-url or REDIS_URL.
func (e *env) connect() error {
	raw := e.g.redisURL
	if raw == "" {
		raw = e.getenv("REDIS_URL")
	}
	if raw == "" {
		raw = redisurl.Default
	}
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message would repeat the URL, password included
		}
		return usageErrorf("redis url (not shown: it may hold a password): %v", err)
	}
	e.shownURL, e.secrets = redisurl.Redact(u)
	if len(e.secrets) > 0 {
		e.password, e.secrets = e.secrets[0], e.secrets[1:]
	}
	rdb, err := redisurl.New(raw)
	if err != nil {
		return usageErrorf("redis url %s: %v", e.shownURL, err)
	}
	e.rdb = rdb
	return nil
}

// scrub replaces the URL's password in a message, whatever produced it,
// wherever it stands as a word of its own (not inside a longer word, so a
// short password does not garble the message).
func (e *env) scrub(msg string) string {
	for _, pw := range append([]string{e.password}, e.secrets...) {
		msg = scrubWord(msg, pw)
	}
	return msg
}

// scrubWord replaces pw in msg where it stands as a word of its own.
func scrubWord(msg, pw string) string {
	if pw == "" {
		return msg
	}
	var b strings.Builder
	for start := 0; ; {
		i := strings.Index(msg[start:], pw)
		if i < 0 {
			b.WriteString(msg[start:])
			return b.String()
		}
		i += start
		end := i + len(pw)
		before, _ := utf8.DecodeLastRuneInString(msg[:i])
		after, _ := utf8.DecodeRuneInString(msg[end:])
		b.WriteString(msg[start:i])
		if isWordRune(before) || isWordRune(after) {
			b.WriteString(pw)
		} else {
			b.WriteString("xxxxx")
		}
		start = end
	}
}

func isWordRune(r rune) bool {
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

func (e *env) actor() string {
	if e.g.actor != "" {
		return e.g.actor
	}
	user := e.getenv("USER")
	if user == "" {
		user = e.getenv("LOGNAME")
	}
	if user == "" {
		user = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return "cbctl:" + user + "@" + host
}

// withTimeout bounds one command's Redis work.
func (e *env) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.g.timeout)
}

// classify maps an error to an exit code.
func (e *env) classify(err error) int {
	var xe *exitError
	if errors.As(err, &xe) {
		return xe.code
	}
	if isAuthError(err) {
		return ExitAuth
	}
	if isUnreachable(err) || isUnknownMaster(err) {
		return ExitUnreachable
	}
	if errors.Is(err, breakerbox.ErrInvalidName) || errors.Is(err, breakerbox.ErrInvalidConfig) {
		return ExitUsage
	}
	return ExitError
}

// explain turns an error into the message for its exit code.
func (e *env) explain(code int, err error) string {
	where := e.shownURL
	switch code {
	case ExitUnreachable:
		if isUnknownMaster(err) {
			return fmt.Sprintf("no sentinel knows a master named %q at %s (check master_name in --redis-url or REDIS_URL: "+
				"redis-cli -p 26379 SENTINEL MASTERS lists the names)", e.masterName(), where)
		}
		if isNotRedis(err) {
			return fmt.Sprintf("the server at %s does not answer like Redis: %v (check host and port in --redis-url or REDIS_URL)", where, err)
		}
		msg := err.Error()
		switch {
		case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls: failed to verify"):
			return fmt.Sprintf("cannot reach Redis at %s: %v (the server's certificate is not trusted: "+
				"point SSL_CERT_FILE at its CA certificate)", where, err)
		case strings.Contains(msg, "first record does not look like a TLS handshake"):
			return fmt.Sprintf("cannot reach Redis at %s: %v (the server does not speak TLS: use redis://, not rediss://)", where, err)
		case strings.HasPrefix(where, "redis://") && (errors.Is(err, io.EOF) || strings.Contains(msg, "connection reset")):
			return fmt.Sprintf("cannot reach Redis at %s: %v (the server closed the connection: "+
				"if it only accepts TLS, use rediss://)", where, err)
		}
		return fmt.Sprintf("cannot reach Redis at %s: %v (set --redis-url or REDIS_URL)", where, err)
	case ExitAuth:
		if isPermissionError(err) {
			return fmt.Sprintf("the Redis user at %s lacks a permission breakerbox needs: %v "+
				"(see the ACL section of docs/operations.md)", where, err)
		}
		return fmt.Sprintf("Redis at %s refused the credentials or permission: %v "+
			"(put the password in the URL: redis://USER:PASSWORD@HOST:PORT/DB, or for Sentinel "+
			"the master's in username= and password= parameters, see docs/operations.md)", where, err)
	}
	var ce *corruptError
	if errors.Is(err, breakerbox.ErrBadConfig) && !errors.As(err, &ce) {
		return err.Error() + "\n(a stored config value is invalid and the script refuses to run that breaker: " +
			"repair it with cbctl config NAME --FIELD VALUE, or redis-cli HSET 'circuit_breaker:{NAME}:config' FIELD VALUE)"
	}
	return err.Error()
}

// isUnknownMaster reports sentinels that answered but know no master of
// the URL's master_name (go-redis: every sentinel replied nil).
func isUnknownMaster(err error) bool {
	return errors.Is(err, redis.Nil) && strings.Contains(err.Error(), "sentinels")
}

// masterName is the master_name of a Sentinel URL.
func (e *env) masterName() string {
	u, err := url.Parse(e.shownURL)
	if err != nil {
		return ""
	}
	return u.Query().Get("master_name")
}

// isPermissionError reports an ACL refusal of a command, key or channel.
func isPermissionError(err error) bool {
	msg := err.Error()
	// Inside a script: "can't run this command", "can't publish to the channel", "can't access ...".
	return strings.Contains(msg, "NOPERM") || strings.Contains(msg, "user executing the script can't")
}

// isAuthError reports a refusal of the credentials or of a permission.
func isAuthError(err error) bool {
	for _, p := range []string{"NOAUTH", "WRONGPASS", "NOPERM"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	msg := err.Error()
	return isPermissionError(err) || strings.Contains(msg, "NOAUTH") || strings.Contains(msg, "WRONGPASS") ||
		strings.Contains(msg, "AUTH <password> called without") || strings.Contains(msg, "AUTH failed")
}

// isNotRedis reports a reply that is not the Redis protocol (an HTTP
// server or a proxy on that port).
func isNotRedis(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "can't parse") || strings.Contains(msg, "invalid reply")
}

// isUnreachable reports an error of the network path to Redis.
func isUnreachable(err error) bool {
	if isNotRedis(err) {
		return true
	}
	var nerr net.Error
	var operr *net.OpError
	switch {
	case errors.As(err, &operr), errors.As(err, &nerr):
		return true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, redis.ErrClosed):
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "i/o timeout") ||
		strings.Contains(msg, "no such host") || strings.Contains(msg, "CLUSTERDOWN") ||
		strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:")
}

func (e *env) usage(w io.Writer) {
	fmt.Fprint(w, `cbctl inspects and operates breakerbox circuit breakers stored in Redis.

usage: cbctl [global flags] COMMAND [args] [flags]

commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %s\n      %s\n", strings.TrimSpace(c.name+" "+c.args), c.short)
	}
	fmt.Fprint(w, `  help
      this text

global flags (before or after the command):
  --redis-url URL   redis://[USER:PASSWORD@]HOST:PORT/DB, rediss:// for TLS,
                    redis://HOST1:PORT?addr=HOST2:PORT&addr=HOST3:PORT for a cluster
                    (default $REDIS_URL, else redis://localhost:6379/0)
  -o text|json      output format of every command (watch -o json: one line per refresh)
  --timeout 10s     bound on each command's Redis work
  --actor WHO       name written to the history by operator actions
                    (default cbctl:$USER@HOST)
  --no-color        watch: no colours (NO_COLOR=1 does the same)

config flags (only the fields given are changed; see docs/protocol.md, Trip rules):
  --failure-threshold N  --recovery-timeout 30s  --success-threshold N
  --half-open-max-calls N  --request-timeout 45s
  --window 60s | --window-calls N  --window-buckets N (1-60)  --minimum-calls N
  --failure-rate PERCENT  --slow-call 800ms  --slow-call-rate PERCENT
  --max-retry-after 10m (0: ignore retry-afters)
  --recovery-backoff PERCENT (200 doubles)  --max-recovery-timeout 10m
  (0 turns a window, a rate or the slow-call threshold off)

exit codes:
  0  ok
  1  runtime error (script error, unexpected reply, ...)
  2  usage error (unknown command or flag, bad argument or value, invalid name)
  3  unknown breaker (no such name in Redis)
  4  Redis unreachable (connection refused, timeout, DNS, TLS)
  5  Redis refused the credentials or a permission (NOAUTH, WRONGPASS, NOPERM)
`)
}
