package cbctl

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// Keys edited by hand can hold the wrong type or a value the scripts
// cannot read. lua/status-8.lua names what it finds in Status.Corrupt;
// lua/breaker-8.lua repairs most of it at the breaker's next write and
// refuses a bad config (BADCONFIG). cbctl turns each finding into one
// message: which key, what is wrong, how to fix it, and what the breaker
// does until then.

// problem is one corrupted key or value of a breaker.
type problem struct {
	item    string // status-8.lua's words for it (Status.Corrupt), to match before and after an action
	subject string // the key, or "KEY field F"
	verb    string // "is" or "holds"
	what    string // "a hash, not a list"
	fix     string // how to repair it (and what the breaker does until then)
}

func (p problem) String() string { return p.subject + " " + p.verb + " " + p.what + ": " + p.fix }

// repaired says that an action repaired p.
func (p problem) repaired(by string) string {
	past := map[string]string{"is": "was", "holds": "held"}[p.verb]
	if past == "" {
		return by + " repaired " + p.subject + " (" + p.what + ")"
	}
	return by + " repaired " + p.subject + ", which " + past + " " + p.what
}

// corruptError is an error cbctl explains in full (a corrupted key that
// stops a command); it wraps Redis's or the script's error.
type corruptError struct {
	msg string
	err error
}

func (e *corruptError) Error() string { return e.msg }
func (e *corruptError) Unwrap() error { return e.err }

// keyTypes are the types of a breaker's keys.
var keyTypes = map[string]string{
	"state": "string", "failures": "string", "last_failure_time": "string", "metrics": "hash",
	"history": "list", "config": "hash", "probes": "zset", "events": "stream",
}

// wrongTypeFix is what happens to each key of the wrong type until it is
// deleted (from lua/breaker-8.lua, which deletes such a key where it reads it).
var wrongTypeFix = map[string]string{
	"state":             "until then the breaker reads as closed; its next call or cbctl action deletes it",
	"failures":          "until then it reads as 0 consecutive failures; the next recorded outcome or cbctl action deletes it",
	"last_failure_time": "until then it reads as no failure; the next recorded failure replaces it",
	"metrics":           "until then generation, mode and lifetime totals read as 0; the next call or cbctl action deletes it",
	"history":           "until then the history reads as empty; the next transition replaces it",
	"config":            "until then the script refuses this breaker with BADCONFIG, and its workers follow their outage policy; once it is gone the defaults apply until a worker seeds its config or cbctl config NAME --FLAG VALUE sets fields",
	"probes":            "until then no probe lease is seen; the next transition deletes it",
	"events":            "until then alertd cannot read this breaker's transitions; the next transition replaces it",
}

// typeNames are Redis's TYPE answers as a message says them.
var typeNames = map[string]string{"string": "a string", "list": "a list", "set": "a set", "zset": "a sorted set",
	"hash": "a hash", "stream": "a stream"}

func typeName(t string) string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "a " + t
}

// wrongType describes key, which a script could not read as type want,
// from its TYPE. When the key is of the right type or absent, it changed
// between the script's read and TYPE, or (with scripts older than the
// WRONGTYPE-only rule) the script was refused a command by the Redis
// user's ACL; fine then says so and how to check.
func (e *env) wrongType(ctx context.Context, key, want string) (what, fine string) {
	t, err := e.rdb.Type(ctx, key).Result()
	switch {
	case err != nil:
		return "of the wrong type, not " + typeName(want) + " (TYPE: " + err.Error() + ")", ""
	case t == "none" || t == want:
		is := typeName(want) + ", as it should be,"
		if t == "none" {
			is = "absent,"
		}
		return is + " but the script could not read it", "the Redis user probably lacks a command the script runs " +
			"(see the ACL section of docs/operations.md)"
	}
	return typeName(t) + ", not " + typeName(want), ""
}

// splitCorrupt splits Status.Corrupt into its items ("; " between them,
// never inside a quoted value).
func splitCorrupt(s string) []string {
	var items []string
	for s != "" {
		end, quoted, escaped := len(s), false, false
		for i := 0; i < len(s) && end == len(s); i++ {
			switch c := s[i]; {
			case escaped:
				escaped = false
			case quoted && c == '\\':
				escaped = true
			case c == '"':
				quoted = !quoted
			case !quoted && strings.HasPrefix(s[i:], "; "):
				end = i
			}
		}
		items = append(items, s[:end])
		s = strings.TrimPrefix(s[end:], "; ")
	}
	return items
}

// counters are the metrics fields that hold decimal digits.
var counters = map[string]bool{"generation": true, "transitions": true, "opened_at": true, "half_open_successes": true,
	"outage_started_at": true, "outage_refused": true, "lease_seq": true, "total_successes": true,
	"total_failures": true, "total_refused": true}

// describe explains one item of breaker name's Status.Corrupt.
func (e *env) describe(ctx context.Context, name, item string) problem {
	p := problem{item: item, verb: "is"}
	if suffix, ok := strings.CutSuffix(item, " has the wrong type"); ok && keyTypes[suffix] != "" {
		p.subject = breakerbox.Key(name, suffix)
		p.what, p.fix = e.wrongType(ctx, p.subject, keyTypes[suffix])
		if p.fix == "" {
			p.fix = "DEL it (" + strings.ReplaceAll(wrongTypeFix[suffix], "NAME", name) + ")"
		}
		return p
	}
	subject, value, ok := strings.Cut(item, " is ")
	if !ok || !strings.HasPrefix(value, `"`) {
		p.subject, p.verb, p.what = breakerbox.Key(name, "*"), "has", "a problem: "+item
		p.fix = "see docs/operations.md (Corrupted keys)"
		return p
	}
	value = strings.ReplaceAll(value, "\\\n", `\n`) // Lua's %q continues a newline on the next line
	p.verb = "holds"
	switch field, isField := strings.CutPrefix(subject, "metrics."); {
	case subject == "state":
		p.subject = breakerbox.Key(name, "state")
		p.what = value + ", not closed, open or half_open"
		p.fix = fmt.Sprintf("cbctl reset %s repairs it now (until then the breaker reads as closed, and its next call "+
			"or cbctl action repairs it to closed with a \"repaired\" event)", name)
	case subject == "failures":
		p.subject = breakerbox.Key(name, "failures")
		p.what = value + ", not a count"
		p.fix = "DEL it (until then it reads as 0 consecutive failures; the next recorded outcome or cbctl action replaces it)"
	case subject == "last_failure_time":
		p.subject = breakerbox.Key(name, "last_failure_time")
		p.what = value + ", not unix milliseconds"
		p.fix = "DEL it (until then it reads as no failure; the next recorded failure replaces it)"
	case isField && field == "mode":
		p.subject = breakerbox.Key(name, "metrics") + " field mode"
		p.what = value + ", not forced_open or disabled"
		p.fix = fmt.Sprintf("HDEL it, or cbctl open|disable|reset %s (until then it reads as normal)", name)
	case isField && counters[field]:
		p.subject = breakerbox.Key(name, "metrics") + " field " + field
		p.what = value + ", not decimal digits"
		p.fix = "HDEL it (until then it reads as 0; the breaker rewrites it at its next change)"
	case isField:
		p.subject = breakerbox.Key(name, "metrics") + " field " + field
		p.what = value + ", which the scripts cannot read"
		p.fix = "HDEL it (until then the breaker reads it as absent)"
	default:
		p.subject = breakerbox.Key(name, subject)
		p.what = value + ", which the scripts cannot read"
		p.fix = "see docs/operations.md (Corrupted keys)"
	}
	return p
}

// problems explains every item of st.Corrupt.
func (e *env) problems(ctx context.Context, st breakerbox.Status) []problem {
	var out []problem
	for _, item := range splitCorrupt(st.Corrupt) {
		out = append(out, e.describe(ctx, st.Name, item))
	}
	return out
}

// warnCorrupt prints a message on stderr for every corrupted key of st.
func (e *env) warnCorrupt(ctx context.Context, st breakerbox.Status) { e.warn(e.problems(ctx, st)) }

// warn prints problems on stderr.
func (e *env) warn(problems []problem) {
	for _, p := range problems {
		fmt.Fprintln(e.stderr, "cbctl: "+p.String())
	}
}

// reportRepairs prints, after an operation (by) that wrote breaker name,
// which of the problems found before it are gone and which remain.
func (e *env) reportRepairs(ctx context.Context, by string, before []problem, after breakerbox.Status) {
	left := map[string]bool{}
	for _, item := range splitCorrupt(after.Corrupt) {
		left[item] = true
	}
	for _, p := range before {
		if !left[p.item] {
			fmt.Fprintln(e.stderr, "cbctl: "+p.repaired(by))
		}
	}
	e.warnCorrupt(ctx, after)
}

// badConfigField parses the script's BADCONFIG message for a bad value.
var badConfigField = regexp.MustCompile(`BADCONFIG: (\w+) is "(.*)", want (.*)$`)

// explainBreaker turns an error of reading or acting on breaker name into
// a message naming the corrupted key and its fix, when it is one: a bad
// stored config (BADCONFIG) or a key of the wrong type (WRONGTYPE) at key
// (empty when the caller does not know which key it read). Other errors
// are returned unchanged.
func (e *env) explainBreaker(ctx context.Context, name, key string, err error) error {
	if err == nil {
		return nil
	}
	var ce *corruptError
	if errors.As(err, &ce) {
		return err
	}
	cfgKey := breakerbox.Key(name, "config")
	msg := err.Error()
	refused := "until then the script refuses this breaker with BADCONFIG, and its workers follow their outage policy"
	switch {
	case errors.Is(err, breakerbox.ErrBadConfig) && strings.Contains(msg, "is not a hash"):
		what, fine := e.wrongType(ctx, cfgKey, "hash")
		if fine != "" {
			return &corruptError{err: err, msg: cfgKey + " is " + what + " (BADCONFIG): " + fine}
		}
		return &corruptError{err: err, msg: cfgKey + " is " + what + ": DEL it, and set fields with cbctl config " + name +
			" --FLAG VALUE if the defaults do not suit (" + refused + ")"}
	case errors.Is(err, breakerbox.ErrBadConfig):
		// The script names the first bad field; the hash names them all.
		var bad []string // "field F holds "V", not an integer A..B"
		var flags []string
		hash, herr := e.rdb.HGetAll(ctx, cfgKey).Result()
		if herr == nil {
			_, invalid := breakerbox.ConfigFromFields(hash)
			for _, f := range invalid {
				cf, _ := breakerbox.ConfigFieldByName(f)
				bad = append(bad, fmt.Sprintf("field %s holds %q, not an integer %d..%d", f, hash[f], cf.Min, cf.Max))
				flags = append(flags, f)
			}
		}
		if len(bad) == 0 {
			m := badConfigField.FindStringSubmatch(msg)
			if m == nil {
				return err
			}
			bad, flags = []string{fmt.Sprintf("field %s holds %q, not %s", m[1], m[2], m[3])}, []string{m[1]}
		}
		hdel := "HDEL the field for its default"
		if len(flags) > 1 {
			hdel = "HDEL the fields for their defaults"
		}
		var opts []string
		for _, f := range flags {
			for _, cf := range configFlags {
				if cf.field == f {
					opts = append(opts, "--"+cf.flag+" VALUE")
				}
			}
		}
		fix := "HSET valid values, or " + hdel
		if len(opts) == len(flags) {
			fix = fmt.Sprintf("cbctl config %s %s repairs it, or %s", name, strings.Join(opts, " "), hdel)
		}
		return &corruptError{err: err, msg: fmt.Sprintf("%s %s: %s (%s)", cfgKey, strings.Join(bad, ", and "), fix, refused)}
	case key != "" && isWrongType(err):
		suffix := strings.TrimPrefix(key, breakerbox.KeyPrefix+"{"+name+"}:")
		what, _ := e.wrongType(ctx, key, keyTypes[suffix]) // WRONGTYPE: it is not fine
		return &corruptError{err: err, msg: key + " is " + what + ": DEL it (" +
			strings.ReplaceAll(wrongTypeFix[suffix], "NAME", name) + ")"}
	}
	return err
}

// explainRegistry explains a registry of the wrong type.
func (e *env) explainRegistry(ctx context.Context, err error) error {
	if err == nil || !isWrongType(err) {
		return err
	}
	what, _ := e.wrongType(ctx, breakerbox.RegistryKey, "set")
	return &corruptError{err: err, msg: breakerbox.RegistryKey + " is " + what +
		": DEL it (until then cbctl cannot list breakers; breakers are also found by SCAN, and workers add theirs again as they start)"}
}

// isWrongType reports Redis's WRONGTYPE reply.
func isWrongType(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "WRONGTYPE")
}

// explainStatuses explains, one by one, the breakers that statuses could
// not read (errs joins one error per breaker; got holds those read).
func (e *env) explainStatuses(ctx context.Context, names []string, got []breakerbox.Status, err error) error {
	var joined interface{ Unwrap() []error }
	if err == nil || !errors.As(err, &joined) {
		return err
	}
	read := map[string]bool{}
	for _, st := range got {
		read[st.Name] = true
	}
	var out []error
	for _, one := range joined.Unwrap() {
		for _, n := range names {
			if !read[n] && strings.HasPrefix(one.Error(), fmt.Sprintf("breaker %q:", n)) {
				one = e.explainBreaker(ctx, n, "", one)
				break
			}
		}
		out = append(out, one)
	}
	return errors.Join(out...)
}

// warnUnreadable prints a message on stderr for every history entry in
// evs that is not JSON (admin.History returns it as an event named
// "unreadable" holding the raw text).
func (e *env) warnUnreadable(name string, evs []breakerbox.Event) {
	key := breakerbox.Key(name, "history")
	for i, ev := range evs {
		if ev.Event != "unreadable" {
			continue
		}
		fix := "LREM it, or leave it: it ages out after 100 newer events"
		if len(ev.Detail) <= 200 {
			fix = "remove it with redis-cli LREM " + shellQuote(key) + " 1 " + shellQuote(ev.Detail) +
				", or leave it: it ages out after 100 newer events"
		}
		p := problem{subject: fmt.Sprintf("%s entry %d (0 is the newest)", key, i), verb: "holds",
			what: fmt.Sprintf("%q, not JSON (shown as the event unreadable)", oneLine(ev.Detail, 80)), fix: fix}
		fmt.Fprintln(e.stderr, "cbctl: "+p.String())
	}
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
