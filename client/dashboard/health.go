package dashboard

import "time"

// Health is the dashboard's own health, served as JSON by its healthz path.
type Health struct {
	// OK is true when the dashboard is running, its last read of the
	// breakers succeeded within three intervals, its subscription to the
	// breakers' announcements is live, and no operator action was refused
	// for lack of permission since the last one that succeeded.
	OK bool `json:"ok"`
	// Redis is "ok" or why the breakers could not be read (NOPERM under an
	// ACL that lacks a permission, a connection error, ...).
	Redis string `json:"redis"`
	// Subscription is "ok" or why the subscription failed.
	Subscription string `json:"subscription"`
	// Actions is "ok" or the permission error of the last refused action.
	Actions string `json:"actions"`
	// Breakers is how many breakers the dashboard shows.
	Breakers int `json:"breakers"`
	// LastRead is when the breakers were last read.
	LastRead time.Time `json:"last_read,omitzero"`
}

// health reports the feed's health at now.
func (f *feed) healthAt(now time.Time) Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.health
	r := Health{Redis: "ok", Subscription: "ok", Actions: "ok", Breakers: len(f.rows), LastRead: h.lastRead}
	switch {
	case !h.running:
		r.Redis = "not running: call Dashboard.Run"
	case h.readErr != nil:
		r.Redis = h.readErr.Error()
	case h.lastRead.IsZero():
		r.Redis = "not read yet"
	case now.Sub(h.lastRead) > 3*f.interval+f.timeout:
		r.Redis = "last read " + now.Sub(h.lastRead).Round(time.Second).String() + " ago"
	}
	switch {
	case h.subErr != nil:
		r.Subscription = h.subErr.Error()
	case !h.subscribed:
		r.Subscription = "not subscribed"
	}
	if h.actionErr != nil {
		r.Actions = h.actionErr.Error()
	}
	r.OK = r.Redis == "ok" && r.Subscription == "ok" && r.Actions == "ok"
	return r
}

// actionDone records whether an action was refused for lack of
// permission, which /healthz reports until an action succeeds.
func (f *feed) actionDone(permissionErr error) {
	f.mu.Lock()
	f.health.actionErr = permissionErr
	f.mu.Unlock()
}
