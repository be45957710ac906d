//go:build !linux && !darwin

package client

import "net"

// peeker is not available on this platform: views rely on the reader alone.
type peeker struct{}

func newPeeker(net.Conn) *peeker { return nil }

func (p *peeker) waiting() bool { return false }
