package bench

import (
	"strings"
	"testing"
)

const commandstatsSample = "# Commandstats\r\n" +
	"cmdstat_evalsha:calls=10,usec=250,usec_per_call=25.00,rejected_calls=0,failed_calls=1\r\n" +
	"cmdstat_client|list:calls=2,usec=30,usec_per_call=15.00,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_info:calls=7,usec=700,usec_per_call=100.00,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_PING:calls=3,usec=3,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n" +
	"\r\n# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n"

func TestParseCommandStatsReadsCallsAndUsecOfEveryCommand(t *testing.T) {
	cs, err := ParseCommandStats(commandstatsSample)
	if err != nil {
		t.Fatal(err)
	}
	want := CommandStats{
		"evalsha":     {Calls: 10, Usec: 250},
		"client|list": {Calls: 2, Usec: 30},
		"info":        {Calls: 7, Usec: 700},
		"ping":        {Calls: 3, Usec: 3},
	}
	if len(cs) != len(want) {
		t.Fatalf("got %v, want %v", cs, want)
	}
	for name, w := range want {
		if cs[name] != w {
			t.Errorf("%s: got %+v, want %+v", name, cs[name], w)
		}
	}
	if got := cs["evalsha"].UsecPerCall(); got != 25 {
		t.Errorf("evalsha usec per call %v, want 25", got)
	}
	if got := (CmdStat{}).UsecPerCall(); got != 0 {
		t.Errorf("usec per call of no calls %v, want 0", got)
	}
}

func TestParseCommandStatsRejectsMalformedLines(t *testing.T) {
	for name, line := range map[string]string{
		"calls not a number": "cmdstat_get:calls=x,usec=1",
		"usec missing":       "cmdstat_get:calls=1,usec_per_call=1.0",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseCommandStats(line); err == nil {
				t.Errorf("%q parsed without error", line)
			}
		})
	}
}

func TestCommandStatsSubKeepsOnlyCommandsThatRanAndTotalSkips(t *testing.T) {
	before := CommandStats{"evalsha": {10, 250}, "get": {5, 5}, "info": {7, 700}}
	after := CommandStats{"evalsha": {14, 350}, "get": {5, 5}, "info": {8, 800}, "set": {2, 4}}
	d := after.Sub(before)
	if _, ok := d["get"]; ok {
		t.Errorf("get did not run between the snapshots but is in the delta %v", d)
	}
	if d["evalsha"] != (CmdStat{4, 100}) || d["set"] != (CmdStat{2, 4}) {
		t.Errorf("delta %v", d)
	}
	if got := d.Total("info"); got != (CmdStat{6, 104}) {
		t.Errorf("total without info %+v, want {6 104}", got)
	}
	if got := d.Total(); got != (CmdStat{7, 204}) {
		t.Errorf("total %+v, want {7 204}", got)
	}
	if got := d.String(); got != "evalsha=4 set=2 info=1" {
		t.Errorf("String() = %q", got)
	}
}

func TestInfoFieldFindsTheValueOfAField(t *testing.T) {
	if got := InfoField(commandstatsSample, "used_cpu_user"); got != "2.250000" {
		t.Errorf("used_cpu_user = %q", got)
	}
	if got := InfoField(commandstatsSample, "used_cpu"); got != "" {
		t.Errorf("a prefix of a field matched: %q", got)
	}
}

func TestCPUModelReadsTheFirstModelName(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: other\n"
	if got := CPUModel(info); got != "AMD EPYC 7B13" {
		t.Errorf("CPUModel = %q", got)
	}
	if got := CPUModel("nothing"); got != "unknown" {
		t.Errorf("CPUModel without a model name = %q", got)
	}
}

func TestParseOptions(t *testing.T) {
	o, err := ParseOptions([]string{"-dur", "50ms", "-conc", "1, 16", "-procs", "3x2", "-cases", "ping,bb-fast-closed"}, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Concs) != 2 || o.Concs[1] != 16 || o.Procs != 3 || o.ProcConc != 2 || len(o.Cases) != 2 {
		t.Errorf("options %+v", o)
	}
	if o, err := ParseOptions([]string{"-procs", ""}, new(strings.Builder)); err != nil || o.Procs != 0 {
		t.Errorf("-procs \"\" gave %d processes, err %v; want none", o.Procs, err)
	}
	for _, bad := range [][]string{
		{"-conc", "0"}, {"-conc", "x"}, {"-procs", "4y"}, {"-procs", "0x3"},
		{"-cases", "nope"}, {"-reps", "0"}, {"-dur", "0s"}, {"extra"},
	} {
		if _, err := ParseOptions(bad, new(strings.Builder)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
