package bench

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// CmdStat is one line of INFO commandstats.
type CmdStat struct {
	Calls int64
	Usec  int64
}

// UsecPerCall is the server time per call of this command, in microseconds.
func (c CmdStat) UsecPerCall() float64 {
	if c.Calls == 0 {
		return 0
	}
	return float64(c.Usec) / float64(c.Calls)
}

// CommandStats maps a lower-case command name ("evalsha", "client|list")
// to its counters.
type CommandStats map[string]CmdStat

// ParseCommandStats reads the "cmdstat_NAME:calls=N,usec=N,..." lines of
// INFO commandstats; other lines are ignored.
func ParseCommandStats(info string) (CommandStats, error) {
	out := CommandStats{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var st CmdStat
		var seen int
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			switch k {
			case "calls", "usec":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("commandstats %s: %s=%q: %w", name, k, v, err)
				}
				if k == "calls" {
					st.Calls = n
				} else {
					st.Usec = n
				}
				seen++
			}
		}
		if seen != 2 {
			return nil, fmt.Errorf("commandstats line %q: want calls and usec", line)
		}
		out[strings.ToLower(strings.TrimPrefix(name, "cmdstat_"))] = st
	}
	return out, nil
}

// Sub returns after minus before, per command; commands whose calls did
// not change are left out.
func (after CommandStats) Sub(before CommandStats) CommandStats {
	out := CommandStats{}
	for name, a := range after {
		b := before[name]
		if d := (CmdStat{Calls: a.Calls - b.Calls, Usec: a.Usec - b.Usec}); d.Calls != 0 {
			out[name] = d
		}
	}
	return out
}

// Total sums calls and usec over every command except those named in skip.
func (c CommandStats) Total(skip ...string) CmdStat {
	var t CmdStat
	for name, st := range c {
		if contains(skip, name) {
			continue
		}
		t.Calls += st.Calls
		t.Usec += st.Usec
	}
	return t
}

// String lists the commands by calls, for logs: "evalsha=10 get=3".
func (c CommandStats) String() string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if c[names[i]].Calls != c[names[j]].Calls {
			return c[names[i]].Calls > c[names[j]].Calls
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + strconv.FormatInt(c[n].Calls, 10)
	}
	return strings.Join(parts, " ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// InfoField returns the value of "field:value" in an INFO reply, or "".
func InfoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return v
		}
	}
	return ""
}

// ServerSnapshot is what the benchmark reads from INFO around a case.
type ServerSnapshot struct {
	Cmds   CommandStats
	CPUSec float64 // used_cpu_sys + used_cpu_user of the server process
}

// Snapshot reads INFO commandstats and cpu in one command. The INFO call
// itself shows up in the next snapshot's delta as "info", which callers skip.
func Snapshot(ctx context.Context, rdb *redis.Client) (ServerSnapshot, error) {
	info, err := rdb.Info(ctx, "commandstats", "cpu").Result()
	if err != nil {
		return ServerSnapshot{}, fmt.Errorf("INFO: %w", err)
	}
	cmds, err := ParseCommandStats(info)
	if err != nil {
		return ServerSnapshot{}, err
	}
	var cpu float64
	for _, f := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(InfoField(info, f), 64)
		if err != nil {
			return ServerSnapshot{}, fmt.Errorf("INFO %s: %w", f, err)
		}
		cpu += v
	}
	return ServerSnapshot{Cmds: cmds, CPUSec: cpu}, nil
}
