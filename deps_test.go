package breakerbox_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestOperatorSideDoesNotDependOnTheWorker checks, with go list, that the
// packages that only read and operate breakers depend neither on
// gopher-lua (the worker's outage fallback) nor on package client (the
// worker): they use the root vocabulary and client/admin.
func TestOperatorSideDoesNotDependOnTheWorker(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(goTool); err != nil {
		t.Skipf("no go command at %s to list dependencies: %v", goTool, err)
	}
	const mod = "github.com/breakerbox/breakerbox"
	pkgs := []string{mod, mod + "/alerts", mod + "/client/admin", mod + "/client/health",
		mod + "/client/metrics", mod + "/cmd/cbctl", mod + "/cmd/alertd", mod + "/internal/cbctl"}
	out, err := exec.Command(goTool, append([]string{"list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, deps := fields[0], fields[1:]
		seen++
		for _, forbidden := range []string{"github.com/yuin/gopher-lua", mod + "/client", mod + "/internal/luaengine"} {
			if slices.Contains(deps, forbidden) {
				t.Errorf("%s depends on %s", pkg, forbidden)
			}
		}
	}
	if seen != len(pkgs) {
		t.Errorf("go list reported %d packages, want %d:\n%s", seen, len(pkgs), out)
	}
}
