package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// pythonDir holds the standard-library Python worker and runner.
const pythonDir = "python"

// requirePython returns the python3 to run, skipping the test when there is
// none (failing instead when BREAKERBOX_REQUIRE_REDIS=1, as on CI).
func requirePython(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("BREAKERBOX_PYTHON"); p != "" {
		return p
	}
	path, err := exec.LookPath("python3")
	if err == nil {
		return path
	}
	reason := "python3 not found (set BREAKERBOX_PYTHON or put python3 on PATH): " + err.Error()
	if os.Getenv("BREAKERBOX_REQUIRE_REDIS") == "1" {
		t.Fatal(reason)
	}
	t.Skip(reason)
	return ""
}

// pythonResult is one line of `conformance.py run`.
type pythonResult struct {
	Vector   string   `json:"vector"`
	Passed   bool     `json:"passed"`
	Errors   []string `json:"errors"`
	Attempts int      `json:"attempts"`
	Late     []string `json:"late"`
	KnownBug string   `json:"known_bug"`
	Summary  *struct {
		Passed, Failed, Total int
		KnownBug              int    `json:"known_bug"`
		ScriptSHA1            string `json:"script_sha1"`
	} `json:"summary"`
}

// TestVectorsPython runs every vector through the Python runner, a client
// with no Go in it: its own RESP over a socket, SCRIPT LOAD of the file
// lua/breaker-8.lua, EVALSHA, against a real redis-server.
func TestVectorsPython(t *testing.T) {
	py := requirePython(t)
	srv := redistest.Start(t)
	vectors := loadVectors(t)
	byName := map[string]Vector{}
	for _, v := range vectors {
		byName[v.Name] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join(pythonDir, "conformance.py"), "run",
		"--addr", srv.Addr, "--scale", strconv.FormatInt(*flagScale, 10),
		"--script", filepath.Join("..", "lua", breakerbox.BreakerScript.File), "--vectors", vectorDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("python runner did not finish: %v\n%s", ctx.Err(), stderr.String())
	}
	var exit *exec.ExitError
	if err != nil && (!errorsAs(err, &exit) || exit.ExitCode() != 1) {
		t.Fatalf("python runner: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), out)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var sum *pythonResult
	for sc.Scan() {
		var r pythonResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("python runner printed %q: %v", sc.Text(), err)
		}
		if r.Summary != nil {
			sum = &r
			continue
		}
		v, ok := byName[r.Vector]
		if !ok {
			t.Errorf("python runner reports unknown vector %q", r.Vector)
			continue
		}
		seen[r.Vector] = true
		t.Run(r.Vector, func(t *testing.T) { report(t, "python", v, r.Passed, r.Attempts, r.Late, r.Errors) })
	}
	if sum == nil {
		t.Fatalf("python runner printed no summary\nstderr:\n%s", stderr.String())
	}
	if sum.Summary.ScriptSHA1 != breakerbox.BreakerScript.SHA1 {
		t.Errorf("python loaded a script with SHA1 %s, Go embeds %s", sum.Summary.ScriptSHA1, breakerbox.BreakerScript.SHA1)
	}
	for _, v := range vectors {
		if !seen[v.Name] {
			t.Errorf("python runner did not run vector %s", v.Name)
		}
	}
}
