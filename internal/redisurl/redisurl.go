// Package redisurl builds go-redis clients from redis:// URLs, for the
// worker's package (client.RedisFromURL) and for the commands that must
// not import it (cbctl, alertd). Three forms, documented in
// docs/operations.md ("Connecting"):
//
//	redis://[[USER]:PASSWORD@]HOST:PORT[/DB]                 one server (rediss:// for TLS)
//	redis://HOST1:PORT?addr=HOST2:PORT&addr=HOST3:PORT        a Redis Cluster
//	redis://[[SUSER]:SPASSWORD@]S1:PORT[/DB]?master_name=NAME&addr=S2:PORT&addr=S3:PORT[&username=USER&password=PASSWORD]
//	                                                           Sentinel: the sentinels, and the master's name
//
// The Sentinel form is go-redis's own (redis.ParseFailoverURL): the user
// and password before the first host are the sentinels'; the master's and
// replicas' come in the username= and password= parameters.
//
// Every client made here follows failovers (internal/redisconn) and bounds
// each command by its context's deadline (go-redis ContextTimeoutEnabled),
// unless the URL says context_timeout_enabled=false.
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/internal/redisconn"
)

// Default is used when REDIS_URL is unset, as in the seed.
const Default = "redis://localhost:6379/0"

// SentinelForm is the Sentinel URL form, for messages.
const SentinelForm = "redis://SENTINEL1:26379/0?master_name=NAME&addr=SENTINEL2:26379&addr=SENTINEL3:26379"

// FromEnv builds a Redis client from the REDIS_URL environment variable
// (default redis://localhost:6379/0).
func FromEnv() (redis.UniversalClient, error) {
	u := os.Getenv("REDIS_URL")
	if u == "" {
		u = Default
	}
	return New(u)
}

// Kind says which of the three forms a URL has.
type Kind int

// The URL forms.
const (
	Single   Kind = iota // one server
	Cluster              // addr= parameters: a Redis Cluster
	Sentinel             // master_name=: Sentinel
)

// KindOf tells the form of a parsed URL.
func KindOf(u *url.URL) Kind {
	q := u.Query()
	switch {
	case q.Has("master_name"):
		return Sentinel
	case q.Has("addr"):
		return Cluster
	}
	return Single
}

// New builds a Redis client from a redis:// or rediss:// (TLS) URL in one
// of the three forms above. Errors never repeat the URL (it may hold a
// password).
func New(rawURL string) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message would repeat the URL, password included
		}
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if strings.Contains(u.Scheme, "sentinel") {
		return nil, fmt.Errorf("redis url: scheme %q: for Sentinel use %s", u.Scheme, SentinelForm)
	}
	// go-redis reads context_timeout_enabled only in the Sentinel form:
	// read it here for all three, default true.
	ctxTimeout := true
	if q := u.Query(); q.Has(ctxTimeoutParam) {
		if ctxTimeout, err = strconv.ParseBool(q.Get(ctxTimeoutParam)); err != nil {
			return nil, fmt.Errorf("redis url: %s=%q: want true or false", ctxTimeoutParam, q.Get(ctxTimeoutParam))
		}
		q.Del(ctxTimeoutParam)
		u.RawQuery = q.Encode()
		rawURL = u.String()
	}
	var rdb redis.UniversalClient
	switch KindOf(u) {
	case Sentinel:
		opt, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis sentinel url: %w", err)
		}
		if opt.MasterName == "" {
			return nil, fmt.Errorf("redis sentinel url: master_name is empty; the form is %s", SentinelForm)
		}
		opt.ContextTimeoutEnabled = ctxTimeout
		rdb = redis.NewFailoverClient(opt)
	case Cluster:
		opt, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis cluster url: %w", err)
		}
		opt.ContextTimeoutEnabled = ctxTimeout
		rdb = redis.NewClusterClient(opt)
	default:
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		opt.ContextTimeoutEnabled = ctxTimeout
		rdb = redis.NewClient(opt)
	}
	return redisconn.Follow(rdb), nil
}

// ctxTimeoutParam turns go-redis ContextTimeoutEnabled off with "false".
const ctxTimeoutParam = "context_timeout_enabled"

// secretParams are the query parameters that hold passwords.
var secretParams = []string{"password", "sentinel_password"}

// Redact returns u for display, with every password (the userinfo's and
// the password= parameter of the Sentinel form) replaced by "xxxxx", and
// the passwords themselves, for scrubbing them out of error messages.
func Redact(u *url.URL) (shown string, secrets []string) {
	c := *u
	if pw, ok := u.User.Password(); ok && pw != "" {
		secrets = append(secrets, pw)
	}
	shown = c.Redacted()
	q := u.Query()
	changed := false
	for _, p := range secretParams {
		for i, v := range q[p] {
			if v != "" {
				secrets = append(secrets, v)
				q[p][i] = "xxxxx"
				changed = true
			}
		}
	}
	if changed {
		r, _ := url.Parse(shown)
		if r != nil {
			r.RawQuery = q.Encode()
			shown = r.String()
		}
	}
	return shown, secrets
}
