package breakerbox_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// loseFirstScriptReply listens on 127.0.0.1 and relays to upstream, except
// that the first connection that carries a script call (EVAL or EVALSHA)
// is cut: the call reaches upstream and runs, its reply never reaches the
// client, which sees the connection close (a reply lost after the script
// ran).
func loseFirstScriptReply(t *testing.T, upstream string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var cut atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			go func() { // upstream's replies to the client, until cut
				_, _ = io.Copy(c, u)
				_ = c.Close()
			}()
			go func() {
				defer u.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if bytes.Contains(bytes.ToLower(buf[:n]), []byte("eval")) && cut.CompareAndSwap(false, true) {
							_ = c.Close() // the client sees EOF, and no reply
							_, _ = u.Write(buf[:n])
							time.Sleep(100 * time.Millisecond) // the script runs upstream
							return
						}
						if _, werr := u.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestAScriptWhoseReplyIsLostIsNotSentAgain: go-redis retries a command
// whose reply it lost (MaxRetries, 3 by default), but a script that ran
// and is sent again applies its counts twice. Script calls that write are
// sent once: the caller gets the error, the counts are applied once.
func TestAScriptWhoseReplyIsLostIsNotSentAgain(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: loseFirstScriptReply(t, mr.Addr())}) // go-redis's default retries
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	keys := breakerbox.Keys("svc")
	direct := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = direct.Close() })
	if _, err := breakerbox.BreakerScript.Load(ctx, direct); err != nil { // so that EVALSHA runs at once
		t.Fatal(err)
	}
	failures := func() string { return mr.HGet(breakerbox.Key("svc", "metrics"), "total_failures") }
	if err := breakerbox.BreakerScript.Run(ctx, rdb, keys, "tally", "0", "1", "0").Err(); err == nil {
		t.Fatal("the call whose reply was lost reported no error")
	}
	for deadline := time.Now().Add(time.Second); failures() == "" && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // the call reaches the server after the client saw EOF
	}
	if got := failures(); got != "1" {
		t.Fatalf("total_failures = %q after one tally of 1 failure whose reply was lost, want 1 (2: sent again)", got)
	}
	if err := breakerbox.BreakerScript.Run(ctx, rdb, keys, "tally", "0", "1", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if got := failures(); got != "2" {
		t.Errorf("total_failures = %q after a second tally, want 2", got)
	}
}
