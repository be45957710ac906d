package redistest

import (
	"os"
	"path/filepath"
	"strings"
)

// DocumentedACL returns the rule docs/operations.md gives user: the
// arguments of its `ACL SETUSER user ...` line after the user name, with
// ">PASSWORD" replaced by ">"+password. The least-privilege tests run each
// component under this rule, so what they test is what the docs say. It
// fails t unless the docs give user exactly one such line.
func DocumentedACL(t TB, user, password string) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(moduleRoot(t), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	var rule []string
	for line := range strings.SplitSeq(string(doc), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 4 || fields[0] != "ACL" || fields[1] != "SETUSER" || fields[2] != user {
			continue
		}
		if rule != nil {
			t.Fatalf("docs/operations.md gives user %s two rules", user)
		}
		rule = fields[3:]
		for i, a := range rule {
			if a == ">PASSWORD" {
				rule[i] = ">" + password
			}
		}
	}
	if rule == nil {
		t.Fatalf("docs/operations.md has no ACL SETUSER %s line", user)
	}
	return rule
}

// Anys returns ss as command arguments.
func Anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// moduleRoot returns the directory of the go.mod above the working
// directory (a test runs in its package's directory).
func moduleRoot(t TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the working directory")
		}
		dir = parent
	}
}
