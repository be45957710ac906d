package demo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/internal/demo"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLiveDemoServesItsBreakersAndItsOperator(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	done := make(chan int, 1)
	go func() { done <- demo.RunLive(ctx, demo.LiveOptions{Addr: "127.0.0.1:0", Out: &out}) }()

	printed := regexp.MustCompile(`dashboard:  (http://\S+/)\noperator:   sign in as demo with secret (\S+) `)
	var url, secret string
	for deadline := time.Now().Add(10 * time.Second); url == ""; time.Sleep(10 * time.Millisecond) {
		if m := printed.FindStringSubmatch(out.String()); m != nil {
			url, secret = m[1], m[2]
		} else if time.Now().After(deadline) {
			t.Fatalf("no URL and secret printed:\n%s", out.String())
		}
	}
	var rows []struct{ Name, State, Mode string }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res, err := http.Get(url + "api/breakers")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(res.Body).Decode(&rows)
		res.Body.Close()
		if err == nil && len(rows) == len(demo.LiveBreakers()) && strings.Contains(stateList(rows), "legacy_billing forced_open") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breakers served: %v (%v)", rows, err)
		}
	}
	req, _ := http.NewRequest("POST", url+"api/action", strings.NewReader(`{"name":"legacy_billing","action":"release"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("release with the printed secret: %d %s", res.StatusCode, body)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
}

func stateList(rows []struct{ Name, State, Mode string }) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(r.Name + " " + r.Mode + "\n")
	}
	return b.String()
}
