package dashboard

import (
	"context"
	"fmt"
	"net/http"

	"github.com/breakerbox/breakerbox"
)

func (d *Dashboard) serveAction(w http.ResponseWriter, r *http.Request, user string) {
	var in struct{ Name, Action string }
	if err := readJSON(r, &in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !actions[in.Action] {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown action %q: want reset, force_open, disable or release", in.Action))
		return
	}
	d.act(w, r, user, in.Name, in.Action, func(ctx context.Context, actor string) error {
		return d.st.control(ctx, in.Name, in.Action, actor)
	})
}

func (d *Dashboard) serveConfig(w http.ResponseWriter, r *http.Request, user string) {
	var in struct {
		Name   string
		Fields map[string]int64
	}
	if err := readJSON(r, &in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(in.Fields) == 0 {
		writeError(w, http.StatusBadRequest, "no config fields given")
		return
	}
	for f, v := range in.Fields {
		cf, ok := breakerbox.ConfigFieldByName(f)
		if !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown config field %q", f))
			return
		}
		if v < cf.Min || v > cf.Max {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s is %d, want an integer from %d to %d", f, v, cf.Min, cf.Max))
			return
		}
	}
	d.act(w, r, user, in.Name, "configure", func(ctx context.Context, actor string) error {
		return d.st.configure(ctx, in.Name, in.Fields, actor)
	})
}

// act runs an operator's action on a breaker the dashboard knows.
func (d *Dashboard) act(w http.ResponseWriter, r *http.Request, user, name, what string, do func(context.Context, string) error) {
	if _, ok := d.feed.row(name); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no breaker named %q", name))
		return
	}
	actor := "dashboard:" + user + "@" + d.host
	ctx, cancel := context.WithTimeout(r.Context(), d.feed.timeout)
	defer cancel()
	err := do(ctx, actor)
	if err != nil {
		code, perm := classify(err)
		if perm {
			d.feed.actionDone(err)
		}
		d.log.Warn("dashboard: operator action failed", "user", user, "breaker", name, "action", what,
			"remote", r.RemoteAddr, "err", err)
		writeError(w, code, err.Error())
		return
	}
	d.feed.actionDone(nil)
	d.feed.markChanged(name)
	d.log.Info("dashboard: operator action", "user", user, "breaker", name, "action", what, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]string{"ok": what, "actor": actor})
}
