// Package transport protects any HTTP client with a breakerbox breaker: an
// http.RoundTripper that asks the breaker before each request and reports
// the outcome after it. Any SDK that accepts an *http.Client (OpenAI's,
// Anthropic's, Slack's, ...) is protected without changing its callers:
//
//	b, _ := client.New(rdb, "openai_transcription", client.DefaultConfig())
//	rt, _ := transport.New(http.DefaultTransport, b)
//	hc := &http.Client{Transport: rt}
//
// What counts:
//
//   - a connection error, a timeout, or a response with status 500-599 is
//     a failure;
//   - a response with status 100-499 is a success (4xx means the upstream
//     is up and answered: the request was wrong), unless WithFailureStatus
//     or WithTooManyRequestsAsFailure says otherwise;
//   - a 429 Too Many Requests or 503 Service Unavailable carrying a
//     Retry-After header (seconds or an HTTP date) is a failure that passes
//     the retry-after to the breaker: it opens at once, for the whole
//     fleet, until then (bounded by the breaker's MaxRetryAfter; see
//     docs/protocol.md, Trip rules), unless WithoutRetryAfter;
//   - the caller's own cancellation (context.Canceled) ignores the call
//     (Permit.Ignore): it counts nothing and returns a probe's lease;
//   - when the breaker refuses, RoundTrip returns an error matching
//     client.ErrOpen (through the *url.Error of http.Client) without
//     touching the network.
//
// A response judged a success is not reported at once: its body is wrapped,
// and the outcome is recorded when the body is read to the end (success),
// fails mid-read (failure: a stream broken by the upstream), or is closed
// before the end (success: the upstream answered well and the caller chose
// to stop, as json.Decoder does; counting it as a failure would blame the
// upstream for the caller's choice, and ignoring it would let a half-open
// breaker never close). A body that is never closed reports nothing; its
// probe lease, if any, expires after the breaker's RequestTimeout.
package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox/client"
)

// Transport is an http.RoundTripper guarded by a breaker. It is safe for
// concurrent use, as its base must be.
type Transport struct {
	base http.RoundTripper
	b    *client.Breaker
	o    options
}

var _ http.RoundTripper = (*Transport)(nil)

type options struct {
	isFailureStatus func(int) bool
	tooMany         bool
	isFailureErr    func(error) bool
	headerTimeout   time.Duration
	headerTimeoutOK bool
	noRetryAfter    bool
}

// Option configures a Transport.
type Option func(*options)

// WithFailureStatus sets which response status codes count as failures
// (default: 500 to 599). For example, to count 4xx too:
//
//	transport.WithFailureStatus(func(code int) bool { return code >= 400 })
func WithFailureStatus(f func(code int) bool) Option {
	return func(o *options) { o.isFailureStatus = f }
}

// WithTooManyRequestsAsFailure makes 429 Too Many Requests a failure, in
// addition to WithFailureStatus: an upstream that rate-limits every call
// then opens the breaker and callers back off for the recovery timeout.
func WithTooManyRequestsAsFailure() Option { return func(o *options) { o.tooMany = true } }

// WithoutRetryAfter stops passing a 429's or 503's Retry-After to the
// breaker: such a response then counts as WithFailureStatus and
// WithTooManyRequestsAsFailure say, and opens nothing by itself.
func WithoutRetryAfter() Option { return func(o *options) { o.noRetryAfter = true } }

// WithFailureError sets which transport errors (dial, TLS, reset, timeout,
// a body that fails mid-read) count as failures; errors for which it returns
// false count as successes. The caller's own cancellation is never counted.
// Default: every error is a failure.
func WithFailureError(f func(error) bool) Option { return func(o *options) { o.isFailureErr = f } }

// WithResponseTimeout bounds the wait for the response headers of one
// request; past it the request is cancelled and counts as a failure
// (ErrResponseTimeout, matching context.DeadlineExceeded). It does not bound
// reading the body, so long streams are not cut. The default is the
// breaker's RequestTimeout; 0 disables it (http.Client.Timeout and the
// request's context still apply).
func WithResponseTimeout(d time.Duration) Option {
	return func(o *options) { o.headerTimeout, o.headerTimeoutOK = d, true }
}

// States of the wait for response headers.
const (
	waiting int32 = iota
	arrived
	timedOut
)

// ErrResponseTimeout is the error of a request whose response headers did
// not arrive within the response timeout. It matches context.DeadlineExceeded.
var ErrResponseTimeout = fmt.Errorf("transport: no response headers within the response timeout: %w", context.DeadlineExceeded)

// StatusError is the failure recorded for a response whose status counts
// as a failure; RoundTrip still returns the response itself, not this error.
type StatusError struct {
	Method, URL string
	StatusCode  int
	// After is the response's Retry-After (a 429 or 503), zero without one.
	After time.Duration
}

// RetryAfter returns the response's Retry-After: the client records it
// with the failure (client.Permit.Failure).
func (e *StatusError) RetryAfter() time.Duration { return e.After }

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

// New wraps base (http.DefaultTransport when nil) with breaker b.
func New(base http.RoundTripper, b *client.Breaker, opts ...Option) (*Transport, error) {
	if b == nil {
		return nil, errors.New("transport: nil breaker")
	}
	if base == nil {
		base = http.DefaultTransport
	}
	o := options{
		isFailureStatus: func(code int) bool { return code >= 500 && code <= 599 },
		isFailureErr:    func(error) bool { return true },
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.isFailureStatus == nil || o.isFailureErr == nil {
		return nil, errors.New("transport: nil classifier")
	}
	if o.headerTimeout < 0 {
		return nil, fmt.Errorf("transport: response timeout %s, want >= 0", o.headerTimeout)
	}
	if !o.headerTimeoutOK {
		o.headerTimeout = b.Config().RequestTimeout
	}
	return &Transport{base: base, b: b, o: o}, nil
}

// RoundTrip asks the breaker, sends the request through the base transport
// and reports the outcome (for a successful response, when its body ends).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	p, err := t.b.Allow(ctx)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper always closes the request body
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, redactedURL(req), err)
	}

	// The header timer cancels the request only until the headers arrive;
	// wait decides the race between the two.
	callCtx, cancel := context.WithCancelCause(ctx)
	var wait atomic.Int32 // waiting, then arrived or timedOut, whichever comes first
	if t.o.headerTimeout > 0 {
		timer := time.AfterFunc(t.o.headerTimeout, func() {
			if wait.CompareAndSwap(waiting, timedOut) {
				cancel(ErrResponseTimeout)
			}
		})
		defer timer.Stop()
	}
	resp, err := t.base.RoundTrip(req.WithContext(callCtx))
	if !wait.CompareAndSwap(waiting, arrived) { // the timer won
		if err == nil {
			_ = resp.Body.Close()
		}
		err = fmt.Errorf("%s %s: %w", req.Method, redactedURL(req), ErrResponseTimeout)
	}
	if err != nil {
		cancel(nil)
		t.reportErr(ctx, p, err)
		return nil, err
	}
	after := t.retryAfter(resp)
	if t.failureStatus(resp.StatusCode) || after > 0 {
		_ = p.Failure(ctx, &StatusError{Method: req.Method, URL: redactedURL(req), StatusCode: resp.StatusCode, After: after})
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		_ = p.Success(ctx)
		cancel(nil)
		return resp, nil
	}
	resp.Body = &body{rc: resp.Body, t: t, p: p, ctx: ctx, cancel: cancel}
	return resp, nil
}

// CloseIdleConnections closes the base transport's idle connections, so
// that http.Client.CloseIdleConnections reaches it through the wrapper.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// retryAfter reads the Retry-After of a 429 or 503 response: whole seconds
// or an HTTP date (0: none, unparseable, or already past).
func (t *Transport) retryAfter(resp *http.Response) time.Duration {
	if t.o.noRetryAfter || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0
	}
	return ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
}

// maxRetryAfter bounds a parsed Retry-After (the protocol's largest
// RETRY_AFTER_MS, 30 days; the breaker's MaxRetryAfter caps it further).
const maxRetryAfter = 30 * 24 * time.Hour

// ParseRetryAfter reads an HTTP Retry-After value as of now: a number of
// seconds, or an HTTP date. It returns 0 for an empty, malformed or past
// value, and at most 30 days.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return min(time.Duration(min(n, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter)
	}
	when, err := http.ParseTime(v)
	if err != nil || !when.After(now) {
		return 0
	}
	return min(when.Sub(now), maxRetryAfter)
}

func (t *Transport) failureStatus(code int) bool {
	return t.o.isFailureStatus(code) || (t.o.tooMany && code == http.StatusTooManyRequests)
}

// reportErr records a transport error: the caller's cancellation is
// ignored, other errors are failures unless the classifier says not.
func (t *Transport) reportErr(ctx context.Context, p *client.Permit, err error) {
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) && !errors.Is(err, ErrResponseTimeout):
		_ = p.Ignore(ctx)
	case t.o.isFailureErr(err):
		_ = p.Failure(ctx, err)
	default:
		_ = p.Success(ctx)
	}
}

// redactedURL is the request URL without its password or query (which may
// hold API keys), for error texts stored in Redis.
func redactedURL(req *http.Request) string {
	if req.URL == nil {
		return ""
	}
	u := *req.URL
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// cancelOnClose ends the request's context when the body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}

// body reports the outcome of a response judged a success once its end is
// known: EOF is a success, a read error a failure, Close before EOF a
// success.
type body struct {
	rc     io.ReadCloser
	t      *Transport
	p      *client.Permit
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
}

func (b *body) Read(buf []byte) (int, error) {
	n, err := b.rc.Read(buf)
	switch {
	case err == io.EOF:
		b.report(func() { _ = b.p.Success(b.ctx) })
	case err != nil:
		b.report(func() { b.t.reportErr(b.ctx, b.p, fmt.Errorf("reading response body: %w", err)) })
	}
	return n, err
}

func (b *body) Close() error {
	err := b.rc.Close()
	b.report(func() { _ = b.p.Success(b.ctx) })
	b.cancel(nil)
	return err
}

func (b *body) report(f func()) { b.once.Do(f) }
