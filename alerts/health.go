package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"
)

// Health is the daemon's health report, served as JSON by HealthHandler.
type Health struct {
	// OK is true when Redis answered, no operation of the daemon is
	// failing (Problems is empty) and the backlog (Pending + Lag) is
	// within Config.MaxBacklog.
	OK bool `json:"ok"`
	// Redis is "ok" or the error Redis gave.
	Redis string `json:"redis"`
	// Group and Consumer name this daemon.
	Group    string `json:"group"`
	Consumer string `json:"consumer"`
	// Breakers is how many breakers' streams the daemon reads.
	Breakers int `json:"breakers"`
	// Pending counts entries delivered to the group's consumers and not
	// yet acknowledged (being posted, waiting for Slack, or folded in an
	// open flap window), over all breakers.
	Pending int64 `json:"pending"`
	// Lag counts entries not yet delivered to the group, over all breakers
	// whose lag Redis knows (see LagUnknown).
	Lag int64 `json:"lag"`
	// LagUnknown counts breakers whose lag Redis cannot tell (entries were
	// deleted from the stream out of order).
	LagUnknown int `json:"lag_unknown,omitempty"`
	// Streams lists the breakers with pending entries or lag.
	Streams []StreamHealth `json:"streams,omitempty"`
	// Problems lists the operations failing now (reading, acknowledging,
	// subscribing...), each with its last error, such as NOPERM.
	Problems []Problem `json:"problems,omitempty"`
	// Backlog says why the backlog makes the daemon unhealthy, if it does.
	Backlog string `json:"backlog,omitempty"`
	// Time is when the report was made.
	Time time.Time `json:"time"`
}

// StreamHealth is the group's backlog on one breaker's stream.
type StreamHealth struct {
	Breaker string `json:"breaker"`
	Pending int64  `json:"pending"`
	Lag     int64  `json:"lag"` // -1: unknown
}

// Health reports whether Redis answers and the group's backlog on every
// known breaker (XINFO GROUPS, pipelined).
func (d *Daemon) Health(ctx context.Context) (h Health) {
	h = Health{Group: d.cfg.Group, Consumer: d.cfg.Consumer, Time: time.Now().UTC(), Redis: "ok",
		Problems: d.mem.currentProblems()}
	if err := d.rdb.Ping(ctx).Err(); err != nil {
		h.Redis = err.Error()
		return h
	}
	defer func() {
		if backlog := h.Pending + h.Lag; backlog > d.cfg.MaxBacklog {
			h.Backlog = fmt.Sprintf("%d entries pending or not yet read, more than %d", backlog, d.cfg.MaxBacklog)
		}
		h.OK = len(h.Problems) == 0 && h.Backlog == ""
	}()
	names := d.knownNames()
	h.Breakers = len(names)
	if len(names) == 0 {
		return h
	}
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.XInfoGroupsCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.XInfoGroups(ctx, streamKey(n))
	}
	_, _ = pipe.Exec(ctx)
	for i, n := range names {
		groups, err := cmds[i].Result()
		if err != nil {
			continue // the stream vanished; discovery sets it up again
		}
		for _, g := range groups {
			if g.Name != d.cfg.Group {
				continue
			}
			h.Pending += g.Pending
			if g.Lag < 0 {
				h.LagUnknown++
			} else {
				h.Lag += g.Lag
			}
			if g.Pending > 0 || g.Lag != 0 {
				h.Streams = append(h.Streams, StreamHealth{Breaker: n, Pending: g.Pending, Lag: g.Lag})
			}
		}
	}
	return h
}

// HealthHandler serves Health as JSON: 200 when it is OK, 503 when it is
// not (Redis does not answer, an operation keeps failing, the backlog is
// past its bound).
func (d *Daemon) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		h := d.Health(ctx)
		w.Header().Set("Content-Type", "application/json")
		if !h.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(h)
	})
}
