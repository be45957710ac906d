package redistest

import (
	"context"
	"fmt"
	"time"
)

// Replicas of replicated clusters and Sentinel groups authenticate to their
// master as replUser, a user that may only replicate. CutReplication
// deletes it on the master: Redis then drops the replicas' links (their
// connections were authenticated as that user) and refuses their
// reconnection, while the master keeps taking writes. Deleting the user is
// what makes the cut hold: a link merely killed (CLIENT KILL TYPE replica)
// is back within a second and catches up from the backlog.
const (
	replUser     = "redistest-replica"
	replPassword = "redistest-replica-pw"
)

// replACL is the replication user's rule, as ACL SETUSER arguments.
var replACL = []string{replUser, "on", ">" + replPassword, "+psync", "+replconf", "+ping"}

// replicationArgs make a node able to replicate (as a replica) and to be
// replicated from (as a master) with replUser, whatever its role becomes.
// The replica loads the master's data in memory (no RDB file left behind
// for a restart to load), and a master streams it without the default 5s
// wait for more replicas.
func replicationArgs() []string {
	args := append([]string{"--user"}, replACL...)
	return append(args,
		"--masteruser", replUser,
		"--masterauth", replPassword,
		"--repl-diskless-load", "on-empty-db",
		"--repl-diskless-sync-delay", "0", // a replica (re)joining syncs at once
	)
}

// CutReplication cuts every replica of s (a master of a replicated cluster
// or of a Sentinel group) off: it returns once s has no replica connected,
// and from then on the writes s takes reach no replica, so a failover that
// follows loses them, as an asynchronous replication window does. The
// returned function restores the link (the replicas resync); Heal restores
// it too. Replicas of a cut master stay eligible for failover.
func (s *Server) CutReplication(t TB) (restore func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := nodeClient(s.Addr)
	defer cl.Close()
	if err := cl.Do(ctx, "ACL", "DELUSER", replUser).Err(); err != nil {
		t.Fatalf("redistest: CutReplication %s: ACL DELUSER: %v", s.Addr, err)
	}
	// Deleting the user closes its connections; make sure, and wait.
	_ = cl.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err()
	for {
		info, err := cl.Info(ctx, "replication").Result()
		if err == nil && parseInfo(info)["connected_slaves"] == "0" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: CutReplication %s: replicas still connected: %v", s.Addr, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	addr := s.Addr
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := restoreReplication(ctx, addr); err != nil {
			t.Logf("redistest: restoring replication on %s: %v", addr, err)
		}
	}
}

// restoreReplication (re)creates the replication user on the node at addr.
func restoreReplication(ctx context.Context, addr string) error {
	cl := nodeClient(addr)
	defer cl.Close()
	args := []any{"ACL", "SETUSER"}
	for _, a := range replACL {
		args = append(args, a)
	}
	if err := cl.Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("%s: ACL SETUSER %s: %w", addr, replUser, err)
	}
	return nil
}
