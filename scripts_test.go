package breakerbox_test

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// header returns a script's leading --[[ ... ]] block (after its shebang line, if any).
func header(t *testing.T, s *breakerbox.Script) string {
	t.Helper()
	src := strings.TrimPrefix(s.Body, "\n")
	start, end := strings.Index(src, "--[["), strings.Index(src, "]]")
	if start != 0 || end < 0 {
		t.Fatalf("%s does not open with a --[[ ... ]] contract header", s.File)
	}
	return src[start:end]
}

func set(matches [][]string, group int) []string {
	seen := map[string]bool{}
	for _, m := range matches {
		seen[m[group]] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestContractHeaderMatchesScript checks each script's header against its
// file name and against what its body really uses: keys, operations, error
// codes and event names.
func TestContractHeaderMatchesScript(t *testing.T) {
	if len(breakerbox.Scripts()) == 0 {
		t.Fatal("no scripts embedded")
	}
	for _, s := range breakerbox.Scripts() {
		t.Run(s.File, func(t *testing.T) {
			h := header(t, s)
			body := strings.TrimPrefix(s.Body, "\n")[len(h):]
			if !strings.HasPrefix(h, "--[[\n"+s.File+":") {
				t.Errorf("header does not start with the file name %s", s.File)
			}

			// KEYS: the header documents exactly Keys keys, in the layout's order.
			docKeys := regexp.MustCompile(`(?m)^\s+KEYS\[(\d+)\]\s+circuit_breaker:\{NAME\}:(\w+)`).FindAllStringSubmatch(h, -1)
			if len(docKeys) != s.Keys {
				t.Fatalf("header documents %d keys, file name says %d", len(docKeys), s.Keys)
			}
			for i, m := range docKeys {
				if m[1] != strconv.Itoa(i+1) || m[2] != breakerbox.KeySuffixes[i] {
					t.Errorf("header KEYS[%s] = %s, want KEYS[%d] = %s", m[1], m[2], i+1, breakerbox.KeySuffixes[i])
				}
			}
			used := set(regexp.MustCompile(`KEYS\[(\d+)\]`).FindAllStringSubmatch(body, -1), 1)
			var want []string
			for i := 1; i <= s.Keys; i++ {
				want = append(want, strconv.Itoa(i))
			}
			sort.Strings(want)
			if !slices.Equal(used, want) {
				t.Errorf("body uses KEYS %v, header documents %v", used, want)
			}
			if !strings.Contains(body, "#KEYS ~= "+strconv.Itoa(s.Keys)) {
				t.Errorf("body does not check #KEYS ~= %d", s.Keys)
			}

			// Operations: those the header lists are those the body dispatches on.
			opsBlock := h[strings.Index(h, "ARGV[1] is the operation:"):strings.Index(h, "Reply")]
			docOps := set(regexp.MustCompile(`(?m)^  (\w+)\b`).FindAllStringSubmatch(opsBlock, -1), 1)
			// The body dispatches on a table "local OPS = {name = function, ...}",
			// or, with a single operation, checks ARGV[1] ~= 'name'.
			var bodyOps []string
			if m := regexp.MustCompile(`(?s)local OPS = \{(.*?)\}`).FindStringSubmatch(body); m != nil {
				bodyOps = set(regexp.MustCompile(`(\w+) = \w+`).FindAllStringSubmatch(m[1], -1), 1)
			} else {
				bodyOps = set(regexp.MustCompile(`ARGV\[1\] ~= '(\w+)'`).FindAllStringSubmatch(body, -1), 1)
			}
			if !slices.Equal(docOps, bodyOps) {
				t.Errorf("header operations %v, body dispatches %v", docOps, bodyOps)
			}
			replyBlock := h[strings.Index(h, "Reply"):strings.Index(h, "Errors")]
			for _, op := range bodyOps {
				if !regexp.MustCompile(`(?m)^  ` + op + `\s+[\{\[]`).MatchString(replyBlock) {
					t.Errorf("header documents no reply for operation %s", op)
				}
			}

			// Error codes.
			errBlock := h[strings.Index(h, "Errors"):strings.Index(h, "Events")]
			docCodes := set(regexp.MustCompile(`(?m)^  ([A-Z]+)\s`).FindAllStringSubmatch(errBlock, -1), 1)
			// Every error message the body builds starts with a quoted 'CODE '.
			bodyCodes := set(regexp.MustCompile(`'([A-Z][A-Z_]+) `).FindAllStringSubmatch(body, -1), 1)
			if !slices.Equal(docCodes, bodyCodes) {
				t.Errorf("header error codes %v, body returns %v", docCodes, bodyCodes)
			}

			// Event names.
			evLine := regexp.MustCompile(`Event names: ([a-z_,\s]+)\.`).FindStringSubmatch(h)
			if evLine == nil {
				t.Fatal("header lists no event names")
			}
			docEvents := regexp.MustCompile(`,\s*`).Split(strings.TrimSpace(evLine[1]), -1)
			if len(docEvents) == 1 && docEvents[0] == "none" {
				docEvents = nil
			}
			sort.Strings(docEvents)
			bodyEvents := set(regexp.MustCompile(`transition\('(\w+)'`).FindAllStringSubmatch(body, -1), 1)
			if !slices.Equal(docEvents, bodyEvents) {
				t.Errorf("header events %v, body emits %v", docEvents, bodyEvents)
			}
		})
	}
}

func TestScriptsExposeNameKeysAndSHA(t *testing.T) {
	s := breakerbox.BreakerScript
	sum := sha1.Sum([]byte(s.Source))
	if s.Name != "breaker" || s.Keys != 8 || s.File != "breaker-8.lua" || s.SHA1 != hex.EncodeToString(sum[:]) {
		t.Errorf("Breaker = %s/%d/%s/%s", s.Name, s.Keys, s.File, s.SHA1)
	}
	if len(breakerbox.Keys("x")) != s.Keys {
		t.Errorf("Keys returns %d keys, script takes %d", len(breakerbox.Keys("x")), s.Keys)
	}
}

func TestKeysShareTheHashTag(t *testing.T) {
	for _, k := range append(breakerbox.Keys("pay:eu/1"), breakerbox.Channel("pay:eu/1")) {
		if !strings.HasPrefix(k, "circuit_breaker:{pay:eu/1}:") {
			t.Errorf("key %q lacks the hash tag", k)
		}
		if name, ok := breakerbox.NameFromKey(k); !ok || name != "pay:eu/1" {
			t.Errorf("NameFromKey(%q) = %q, %v", k, name, ok)
		}
	}
	for _, k := range []string{"circuit_breaker:registry", "other:{x}:state", "circuit_breaker:{}:state"} {
		if _, ok := breakerbox.NameFromKey(k); ok {
			t.Errorf("NameFromKey(%q) accepted", k)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"openai_transcription", true},
		{"pay:eu/1 (prod)", true},
		{"ü-ß", true},
		{strings.Repeat("a", 200), true},
		{"", false},
		{strings.Repeat("a", 201), false},
		{"a{b", false},
		{"a}b", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"a\x7fb", false},
		{"\xff", false},
	} {
		err := breakerbox.ValidateName(c.name)
		if (err == nil) != c.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, breakerbox.ErrInvalidName) {
			t.Errorf("ValidateName(%q) error %v does not match ErrInvalidName", c.name, err)
		}
	}
}

type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

var _ redis.Error = replyErr("")

func TestScriptErrorMapsCodes(t *testing.T) {
	for code, want := range map[string]error{
		"BADKEYS x": breakerbox.ErrBadKeys, "BADARGS y": breakerbox.ErrBadArgs, "BADCONFIG z": breakerbox.ErrBadConfig,
	} {
		err := breakerbox.ScriptError(replyErr(code))
		if msg := strings.Replace(code, " ", ": ", 1); !errors.Is(err, want) || err.Error() != msg {
			t.Errorf("ScriptError(%q) = %v, want %v with the message", code, err, want)
		}
	}
	other := fmt.Errorf("dial tcp: refused")
	if breakerbox.ScriptError(other) != other {
		t.Error("ScriptError changed a non-reply error")
	}
	if err := breakerbox.ScriptError(replyErr("BADARGSX y")); errors.Is(err, breakerbox.ErrBadArgs) {
		t.Error("a code that only starts like BADARGS was mapped")
	}
}

// luaBounds reads the BOUNDS table of a script: field -> {min, max,
// default} (default -1 where the script computes it: nil).
func luaBounds(t *testing.T, s *breakerbox.Script) map[string][3]int64 {
	t.Helper()
	block := regexp.MustCompile(`(?s)local BOUNDS = \{(.*?)\n\}`).FindStringSubmatch(s.Source)
	if block == nil {
		t.Fatalf("%s has no BOUNDS table", s.File)
	}
	out := map[string][3]int64{}
	for _, m := range regexp.MustCompile(`(\w+)\s*=\s*\{(\d+),\s*(\d+),\s*(\d+|nil)\}`).FindAllStringSubmatch(block[1], -1) {
		lo, _ := strconv.ParseInt(m[2], 10, 64)
		hi, _ := strconv.ParseInt(m[3], 10, 64)
		def, err := strconv.ParseInt(m[4], 10, 64)
		if err != nil {
			def = -1
		}
		out[m[1]] = [3]int64{lo, hi, def}
	}
	return out
}

// TestBothScriptsEnforceTheSameBounds: status-8.lua refuses exactly the
// stored config breaker-8.lua refuses, and both agree with the Go table
// (ConfigFields): every field, its bounds and its default.
func TestBothScriptsEnforceTheSameBounds(t *testing.T) {
	want := map[string][3]int64{}
	for _, f := range breakerbox.ConfigFields() {
		def := f.Default
		if f.Field == "half_open_max_calls" {
			def = -1 // follows success_threshold
		}
		want[f.Field] = [3]int64{f.Min, f.Max, def}
	}
	for _, s := range []*breakerbox.Script{breakerbox.BreakerScript, breakerbox.StatusScript} {
		if got := luaBounds(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s BOUNDS %v\nConfigFields     %v", s.File, got, want)
		}
	}
}

func TestStatusScriptIsReadOnlyWithAShebang(t *testing.T) {
	s := breakerbox.StatusScript
	if !s.ReadOnly || !strings.HasPrefix(s.Source, "#!lua flags=no-writes\n") {
		t.Fatalf("status-8.lua: ReadOnly %v, first line %q", s.ReadOnly, strings.SplitN(s.Source, "\n", 2)[0])
	}
	if s.Body != "\n"+strings.SplitN(s.Source, "\n", 2)[1] || s.BodySHA1 == s.SHA1 {
		t.Errorf("Body must be the source with its first line emptied, under its own SHA1")
	}
	if b := breakerbox.BreakerScript; b.ReadOnly || b.Body != b.Source || b.BodySHA1 != b.SHA1 {
		t.Errorf("breaker-8.lua has no shebang: Body and BodySHA1 must equal Source and SHA1")
	}
	// Nothing in the read-only script writes.
	for _, cmd := range []string{"SET", "DEL", "HSET", "HDEL", "LPUSH", "LTRIM", "XADD", "ZADD", "ZREM", "PUBLISH", "ZREMRANGEBYSCORE"} {
		if strings.Contains(s.Source, "'"+cmd+"'") {
			t.Errorf("status-8.lua calls %s", cmd)
		}
	}
}

// TestProtocolDocNamesEverySHA: docs/protocol.md lists the SHA1 of each
// script and of its body without the shebang line, which callers in other
// languages compare with what SCRIPT LOAD answers.
func TestProtocolDocNamesEverySHA(t *testing.T) {
	doc, err := os.ReadFile("docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range breakerbox.Scripts() {
		for _, sha := range []string{s.SHA1, s.BodySHA1} {
			if !strings.Contains(string(doc), sha) {
				t.Errorf("docs/protocol.md does not name %s's SHA1 %s", s.File, sha)
			}
		}
	}
}

// TestDocsNameNoStaleSHA: every SHA1 the docs show (whole, or as the
// "# 71455a70..." a redis-cli example notes) is one of the scripts'
// current ones, so a changed script cannot leave an old SHA in an example.
func TestDocsNameNoStaleSHA(t *testing.T) {
	var known []string
	for _, s := range breakerbox.Scripts() {
		known = append(known, s.SHA1, s.BodySHA1)
	}
	shaRE := regexp.MustCompile(`\b[0-9a-f]{40}\b|# ([0-9a-f]{8})\.\.\.`)
	files, _ := filepath.Glob("docs/*.md")
	files = append(files, "README.md")
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range shaRE.FindAllStringSubmatch(string(doc), -1) {
			sha := m[0]
			if m[1] != "" {
				sha = m[1]
			}
			if !slices.ContainsFunc(known, func(k string) bool { return strings.HasPrefix(k, sha) }) {
				t.Errorf("%s shows SHA1 %s, which is no script's (they are %v)", f, sha, known)
			}
		}
	}
}
