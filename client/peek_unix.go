//go:build linux || darwin

package client

import (
	"bytes"
	"net"
	"syscall"
)

// peeker looks at a connection's socket without reading from it.
type peeker struct {
	rc  syscall.RawConn
	tls bool // the bytes are encrypted: any byte may be an announcement
}

// newPeeker returns a peeker on conn's socket (a TLS connection's too), or
// nil when conn has none.
func newPeeker(conn net.Conn) *peeker {
	wrapped := false
	for {
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn, wrapped = u.NetConn(), true
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &peeker{rc: rc, tls: wrapped}
}

// waiting reports whether an announcement waits unread on the socket: a
// recv with MSG_PEEK|MSG_DONTWAIT, which neither blocks nor consumes the
// bytes, that finds a pub/sub message among them (a PONG or a subscription
// confirmation does not count). Control takes no read lock, so it does not
// wait for the reader blocked on the same socket.
func (p *peeker) waiting() bool {
	if p == nil {
		return false
	}
	var buf [512]byte
	n := 0
	var rerr error
	err := p.rc.Control(func(fd uintptr) {
		n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	if err != nil || rerr != nil || n <= 0 {
		return false
	}
	return p.tls || bytes.Contains(buf[:n], []byte("\r\nmessage\r\n"))
}
