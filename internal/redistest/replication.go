package redistest

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
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

// streamTimeout is how long checkStreaming waits for the replicas to
// acknowledge its write.
const streamTimeout = 100 * time.Millisecond

// checkStreaming fails unless the master cl talks to sends its writes to
// want replicas: it writes key there (SET, then DEL: nothing is left) and
// asks for want acknowledgements within streamTimeout (WAIT), all on the
// one connection of cl (its pool holds one).
//
// A replica online for the master (INFO: state=online; for the replica,
// master_link_status:up) may not receive the command stream yet. After a
// diskless full sync (repl-diskless-sync, the default since Redis 7) the
// master starts the stream on the replica's first REPLCONF ACK that
// arrives once it has reaped the RDB child. The replica sends one ACK as
// soon as it has loaded the RDB, often before the child has exited on a
// loaded machine, and then one a second (replicationCron): for up to a
// second the master keeps every write in the replica's output buffer, and
// a failover then loses them all. The cluster failover tests killed the
// master 0.5-0.9s after the cluster came up and the promoted replica held
// nothing of that time (it was promoted at offset 1 while the master was
// at 30,000).
func checkStreaming(ctx context.Context, cl *redis.Client, key string, want int) error {
	var wait *redis.Cmd
	_, err := cl.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, "1", 0)
		p.Del(ctx, key)
		wait = p.Do(ctx, "WAIT", want, streamTimeout.Milliseconds())
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: a write and WAIT: %w", cl.Options().Addr, err)
	}
	n, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("%s: WAIT: %w", cl.Options().Addr, err)
	}
	if n < int64(want) {
		return fmt.Errorf("%s: %d of %d replicas acknowledged a write within %v: the replication stream has not started",
			cl.Options().Addr, n, want, streamTimeout)
	}
	return nil
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
