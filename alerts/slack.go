package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// DefaultSlackTimeout bounds one webhook request when no HTTP client is given.
const DefaultSlackTimeout = 10 * time.Second

// SlackSink posts alerts to a Slack incoming webhook through slack-go's
// webhook API. The webhook URL is a secret: it is never logged and never
// appears in an error the sink returns (slack-go and net/http put the URL
// in theirs; they are scrubbed).
//
// Errors are classified for the daemon: a 429 with Retry-After becomes a
// *RetryAfterError with that wait; a 429 without it, 408, any 5xx and
// network errors are retried with backoff; any other 4xx is permanent
// (retrying the same request cannot help).
type SlackSink struct {
	url      string
	secrets  []string // forms of the URL that must not leak
	client   *http.Client
	username string
	icon     string
}

// SlackOption configures a SlackSink.
type SlackOption func(*SlackSink)

// WithHTTPClient sets the HTTP client used for webhook requests (default:
// a client with DefaultSlackTimeout).
func WithHTTPClient(c *http.Client) SlackOption { return func(s *SlackSink) { s.client = c } }

// WithUsername sets the message's username override (when the webhook
// allows it).
func WithUsername(name string) SlackOption { return func(s *SlackSink) { s.username = name } }

// WithIconEmoji sets the message's icon_emoji override, such as ":rotating_light:".
func WithIconEmoji(emoji string) SlackOption { return func(s *SlackSink) { s.icon = emoji } }

// errBadWebhook is returned by NewSlackSink; it never contains the URL.
var errBadWebhook = errors.New("invalid Slack webhook URL")

// NewSlackSink returns a sink posting to webhookURL, which must be an
// absolute http(s) URL. The error never contains the URL.
func NewSlackSink(webhookURL string, opts ...SlackOption) (*SlackSink, error) {
	u, err := url.Parse(webhookURL)
	switch {
	case webhookURL == "":
		return nil, fmt.Errorf("%w: empty", errBadWebhook)
	case err != nil:
		return nil, fmt.Errorf("%w: does not parse", errBadWebhook)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%w: scheme must be https", errBadWebhook)
	case u.Host == "":
		return nil, fmt.Errorf("%w: no host", errBadWebhook)
	}
	s := &SlackSink{url: webhookURL, client: &http.Client{Timeout: DefaultSlackTimeout}}
	for _, o := range opts {
		o(s)
	}
	if s.client == nil {
		return nil, errors.New("alerts: slack sink: nil HTTP client")
	}
	// Every form in which the URL or its secret path could show up in an
	// error text: as given, normalised, and path-escaped.
	for _, v := range []string{webhookURL, u.String(), u.EscapedPath(), u.Path, u.RawQuery} {
		if len(v) > 1 {
			s.secrets = append(s.secrets, v)
		}
	}
	return s, nil
}

// String describes the sink without the secret URL.
func (s *SlackSink) String() string { return "slack webhook (URL redacted)" }

// LogValue keeps the URL out of structured logs.
func (s *SlackSink) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Notify posts a.SlackText() to the webhook.
func (s *SlackSink) Notify(ctx context.Context, a Alert) (bool, error) {
	msg := &slack.WebhookMessage{Text: a.SlackText(), Username: s.username, IconEmoji: s.icon}
	err := slack.PostWebhookCustomHTTPContext(ctx, s.url, s.client, msg)
	if err == nil {
		return false, nil
	}
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	switch {
	case errors.As(err, &rl):
		return true, &RetryAfterError{After: rl.RetryAfter, Err: errors.New("slack webhook: 429 rate limited")}
	case errors.As(err, &sc):
		perm := sc.Code >= 400 && sc.Code < 500 && sc.Code != http.StatusTooManyRequests &&
			sc.Code != http.StatusRequestTimeout
		return !perm, fmt.Errorf("slack webhook: %s: %w", s.scrub(sc.Status), ErrNotDelivered)
	case errors.Is(err, context.Canceled):
		return true, fmt.Errorf("slack webhook: %s: %w", s.scrub(err.Error()), context.Canceled)
	case errors.Is(err, context.DeadlineExceeded):
		return true, fmt.Errorf("slack webhook: %s: %w", s.scrub(err.Error()), context.DeadlineExceeded)
	default:
		return true, fmt.Errorf("slack webhook: %s", s.scrub(err.Error()))
	}
}

// scrub removes every form of the webhook URL from an error text. The
// result is a new string: the original error, which may hold the URL, is
// never wrapped.
func (s *SlackSink) scrub(text string) string {
	for _, secret := range s.secrets {
		text = strings.ReplaceAll(text, secret, "[webhook]")
	}
	return text
}
