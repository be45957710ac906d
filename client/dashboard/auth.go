package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Operator is a person or program allowed to act on breakers from the
// dashboard. It signs in on the page with Name and Secret, or sends
// either "Authorization: Bearer SECRET" or HTTP Basic auth NAME:SECRET
// with each request. The actor written to a breaker's history is
// "dashboard:NAME@HOST", HOST being the dashboard's host name.
type Operator struct {
	Name   string
	Secret string
}

// ParseOperators reads operators written as "NAME:SECRET,NAME:SECRET"
// (the form of alertd's ALERTD_DASHBOARD_OPERATORS). A secret may contain
// ':' but not ','.
func ParseOperators(s string) ([]Operator, error) {
	var ops []Operator
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, secret, ok := strings.Cut(part, ":")
		if !ok { // the text may be a secret: not echoed
			return nil, fmt.Errorf("operator %d of the list: want NAME:SECRET", len(ops)+1)
		}
		ops = append(ops, Operator{Name: name, Secret: secret})
	}
	return ops, nil
}

// minSecretLen is the shortest secret accepted.
const minSecretLen = 8

func validOperator(o Operator) error {
	switch {
	case o.Name == "" || strings.ContainsAny(o.Name, ":,@ \t\r\n"):
		return fmt.Errorf("operator name %q: want a non-empty name without ':', ',', '@' or spaces", o.Name)
	case len(o.Secret) < minSecretLen:
		return fmt.Errorf("operator %q: secret shorter than %d bytes", o.Name, minSecretLen)
	}
	return nil
}

// sessionTTL is how long a sign-in on the page lasts.
const sessionTTL = 12 * time.Hour

// maxSessions bounds the sessions kept; the oldest go first.
const maxSessions = 10000

// cookieName is the session cookie's name.
const cookieName = "breakerbox_session"

// csrfHeader carries the session's CSRF token on every POST of the page.
const csrfHeader = "X-CSRF-Token"

type auth struct {
	ops    []operator
	closed bool

	mu       sync.Mutex
	sessions map[string]*session
	failMu   sync.Mutex // serialises the delay after a wrong secret
}

type operator struct {
	name string
	hash [sha256.Size]byte
}

type session struct {
	user    string
	csrf    string
	expires time.Time
}

func newAuth(ops []Operator, closed bool) (*auth, error) {
	a := &auth{closed: closed, sessions: map[string]*session{}}
	seen := map[string]bool{}
	for _, o := range ops {
		if err := validOperator(o); err != nil {
			return nil, err
		}
		if seen[o.Name] {
			return nil, fmt.Errorf("operator %q given twice", o.Name)
		}
		seen[o.Name] = true
		a.ops = append(a.ops, operator{name: o.Name, hash: sha256.Sum256([]byte(o.Secret))})
	}
	if closed && len(a.ops) == 0 {
		return nil, fmt.Errorf("a closed dashboard needs at least one operator to sign in")
	}
	return a, nil
}

// check returns the operator whose secret this is (and whose name, when
// name is not empty, matches). Every operator is compared, in constant
// time, whatever matches.
func (a *auth) check(name, secret string) (string, bool) {
	h := sha256.Sum256([]byte(secret))
	found := ""
	for _, o := range a.ops {
		if subtle.ConstantTimeCompare(h[:], o.hash[:]) == 1 && (name == "" || name == o.name) && found == "" {
			found = o.name
		}
	}
	if found == "" {
		// A wrong secret waits, one at a time, so guessing is slow.
		a.failMu.Lock()
		time.Sleep(250 * time.Millisecond)
		a.failMu.Unlock()
	}
	return found, found != ""
}

// fromHeader authenticates a request's Authorization header. present is
// false when there is none.
func (a *auth) fromHeader(r *http.Request) (user string, ok, present bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false, false
	}
	if token, isBearer := strings.CutPrefix(h, "Bearer "); isBearer {
		user, ok = a.check("", token)
		return user, ok, true
	}
	if name, secret, isBasic := r.BasicAuth(); isBasic {
		user, ok = a.check(name, secret)
		return user, ok, true
	}
	return "", false, true
}

// fromCookie returns the request's session, if it has a live one.
func (a *auth) fromCookie(r *http.Request) (*session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[c.Value]
	if !ok || time.Now().After(s.expires) {
		delete(a.sessions, c.Value)
		return nil, false
	}
	return s, true
}

// who returns the operator a request comes from, by its Authorization
// header or its session cookie; sess is set for the latter.
func (a *auth) who(r *http.Request) (user string, sess *session) {
	if u, ok, present := a.fromHeader(r); present {
		if ok {
			return u, nil
		}
		return "", nil
	}
	if s, ok := a.fromCookie(r); ok {
		return s.user, s
	}
	return "", nil
}

// mayRead reports whether the request may read the breakers.
func (a *auth) mayRead(r *http.Request) bool {
	if !a.closed {
		return true
	}
	u, _ := a.who(r)
	return u != ""
}

// startSession signs user in: it sets the session cookie and returns the
// session.
func (a *auth) startSession(w http.ResponseWriter, r *http.Request, user string) *session {
	s := &session{user: user, csrf: randomToken(), expires: time.Now().Add(sessionTTL)}
	id := randomToken()
	a.mu.Lock()
	if len(a.sessions) >= maxSessions {
		a.evict()
	}
	a.sessions[id] = s
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: basePath(r), Expires: s.expires,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	return s
}

// evict drops expired sessions, and the oldest if none expired; a.mu is held.
func (a *auth) evict() {
	now := time.Now()
	var oldest string
	for id, s := range a.sessions {
		if now.After(s.expires) {
			delete(a.sessions, id)
		} else if oldest == "" || s.expires.Before(a.sessions[oldest].expires) {
			oldest = id
		}
	}
	if len(a.sessions) >= maxSessions {
		delete(a.sessions, oldest)
	}
}

// endSession signs the request's session out.
func (a *auth) endSession(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		a.mu.Lock()
		delete(a.sessions, c.Value)
		a.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: basePath(r), MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// basePath is the path the dashboard is mounted at, ending in "/": the
// request's original path without the part the handler sees (after
// http.StripPrefix).
func basePath(r *http.Request) string {
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil || !strings.HasSuffix(u.Path, r.URL.Path) {
		return "/"
	}
	return strings.TrimSuffix(u.Path, r.URL.Path) + "/"
}

// subtleEqual compares a token given with the one expected in constant time.
func subtleEqual(given, want string) bool {
	return given != "" && subtle.ConstantTimeCompare([]byte(given), []byte(want)) == 1
}
