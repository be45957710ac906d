//go:build linux || darwin

package client

import (
	"net"
	"syscall"
)

// peeker looks at a connection's socket without reading from it.
type peeker struct{ rc syscall.RawConn }

// newPeeker returns a peeker on conn's socket (a TLS connection's too), or
// nil when conn has none.
func newPeeker(conn net.Conn) *peeker {
	for {
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = u.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &peeker{rc: rc}
}

// waiting reports whether bytes wait unread on the socket: a recv with
// MSG_PEEK|MSG_DONTWAIT, which neither blocks nor consumes them. Control
// takes no read lock, so it does not wait for the reader blocked on the
// same socket.
func (p *peeker) waiting() bool {
	if p == nil {
		return false
	}
	var buf [1]byte
	n := 0
	var rerr error
	err := p.rc.Control(func(fd uintptr) {
		n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	return err == nil && rerr == nil && n > 0
}
