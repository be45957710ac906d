package alerts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Sink delivers alerts, in the style of Alertmanager's notifiers. Notify
// returns nil once the alert was accepted; the daemon then acknowledges
// the transitions it covers. On an error, retry says whether trying again
// can help: true makes the daemon wait (exponential backoff, or the wait a
// *RetryAfterError names) and call Notify again with the same alert; false
// makes it log the error and acknowledge the transitions without posting
// (a 4xx from Slack: the request itself is wrong). Notify must honour ctx.
// A daemon calls Notify for one alert at a time.
type Sink interface {
	Notify(ctx context.Context, a Alert) (retry bool, err error)
}

// ErrNotDelivered marks a sink error that says the alert was certainly not
// posted: the service answered and refused it (Slack's 5xx, 429, 408).
// After a retryable error without it (a timeout, a connection cut, a
// crash) the outcome is unknown, and whoever posts the alert next flags
// it as a possible repeat (Alert.Repeat). A *RetryAfterError counts as a
// refusal too.
var ErrNotDelivered = errors.New("alert not delivered")

// SinkFunc adapts a function to the Sink interface.
type SinkFunc func(ctx context.Context, a Alert) (retry bool, err error)

// Notify calls f.
func (f SinkFunc) Notify(ctx context.Context, a Alert) (bool, error) { return f(ctx, a) }

// RetryAfterError is returned by a sink (with retry true) that was told how
// long to wait before trying again, such as Slack's 429 Retry-After. The
// daemon waits exactly After before the next attempt.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.After, e.Err)
}

// Unwrap returns the underlying error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// WriterSink writes alerts as plain text to an io.Writer (the daemon uses
// standard output when no Slack webhook is configured), separated by blank
// lines. It is safe for concurrent use.
type WriterSink struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriterSink returns a sink writing to w.
func NewWriterSink(w io.Writer) (*WriterSink, error) {
	if w == nil {
		return nil, errors.New("alerts: writer sink: nil writer")
	}
	return &WriterSink{w: w}, nil
}

// Notify writes the alert's text followed by a blank line. A failed write
// is retried.
func (s *WriterSink) Notify(ctx context.Context, a Alert) (bool, error) {
	if err := ctx.Err(); err != nil {
		return true, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := io.WriteString(s.w, a.Text()+"\n\n"); err != nil {
		return true, fmt.Errorf("write alert: %w", err)
	}
	return false, nil
}

// Recorder is a Sink that keeps every alert it accepts, for tests and
// demos. It is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	alerts []Alert
	added  chan struct{}
}

// Notify stores a.
func (r *Recorder) Notify(ctx context.Context, a Alert) (bool, error) {
	if err := ctx.Err(); err != nil {
		return true, err
	}
	r.mu.Lock()
	r.alerts = append(r.alerts, a)
	if r.added != nil {
		close(r.added)
		r.added = nil
	}
	r.mu.Unlock()
	return false, nil
}

// Alerts returns a copy of the alerts accepted so far, in order.
func (r *Recorder) Alerts() []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Alert(nil), r.alerts...)
}

// Wait blocks until at least n alerts were accepted or ctx is done, and
// returns the alerts accepted so far.
func (r *Recorder) Wait(ctx context.Context, n int) ([]Alert, error) {
	for {
		r.mu.Lock()
		if len(r.alerts) >= n {
			out := append([]Alert(nil), r.alerts...)
			r.mu.Unlock()
			return out, nil
		}
		if r.added == nil {
			r.added = make(chan struct{})
		}
		ch := r.added
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return r.Alerts(), fmt.Errorf("waiting for %d alerts: %w", n, ctx.Err())
		}
	}
}

// String lists the titles of the alerts so far, one a line.
func (r *Recorder) String() string {
	var b strings.Builder
	for _, a := range r.Alerts() {
		b.WriteString(a.Title() + "\n")
	}
	return b.String()
}
