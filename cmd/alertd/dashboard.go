package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/client/dashboard"
)

// dashboardPath is where alertd --listen serves the web dashboard.
const dashboardPath = "/dashboard/"

// dashboardOperators reads the operators allowed to act from the
// ALERTD_DASHBOARD_OPERATORS variable (NAME:SECRET,...) and from the file
// given by --dashboard-operators-file (one NAME:SECRET per line, # for
// comments). Secrets are never read from a flag's value, which other users
// of the machine could see.
func dashboardOperators(file string, getenv func(string) string) ([]dashboard.Operator, error) {
	ops, err := dashboard.ParseOperators(getenv("ALERTD_DASHBOARD_OPERATORS"))
	if err != nil {
		return nil, fmt.Errorf("ALERTD_DASHBOARD_OPERATORS: %w", err)
	}
	if file == "" {
		return ops, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--dashboard-operators-file: %w", err)
	}
	var lines []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	more, err := dashboard.ParseOperators(strings.Join(lines, ","))
	if err != nil {
		return nil, fmt.Errorf("--dashboard-operators-file %s: %w", file, err)
	}
	return append(ops, more...), nil
}

// mountDashboard serves the dashboard at /dashboard/ on mux (and sends /
// there), and returns it for the caller to Run.
func mountDashboard(mux *http.ServeMux, rdb redis.UniversalClient, o options, getenv func(string) string, log *slog.Logger) (*dashboard.Dashboard, error) {
	ops, err := dashboardOperators(o.dashboardOperatorsFile, getenv)
	if err != nil {
		return nil, err
	}
	opts := []dashboard.Option{dashboard.WithLogger(log), dashboard.WithOperators(ops...)}
	if o.dashboardClosed {
		opts = append(opts, dashboard.WithClosed())
	}
	d, err := dashboard.New(rdb, opts...)
	if err != nil {
		return nil, err
	}
	mux.Handle(dashboardPath, http.StripPrefix(strings.TrimSuffix(dashboardPath, "/"), d))
	mux.Handle("GET /{$}", http.RedirectHandler(dashboardPath, http.StatusFound))
	access := "read-only for everyone"
	switch {
	case o.dashboardClosed:
		access = fmt.Sprintf("closed: %d operator(s) may sign in", len(ops))
	case len(ops) > 0:
		access = fmt.Sprintf("readable by everyone, %d operator(s) may act", len(ops))
	}
	log.Info("serving the dashboard", "path", dashboardPath, "access", access)
	return d, nil
}
