package client

import "fmt"

// State is a breaker's state as stored in circuit_breaker:{NAME}:state.
type State int

const (
	// Closed admits calls and counts consecutive failures.
	Closed State = iota
	// Open refuses calls until the recovery timeout has passed.
	Open
	// HalfOpen admits a limited number of probes.
	HalfOpen
)

// String returns the wire name: "closed", "open" or "half_open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// ParseState parses a wire name.
func ParseState(s string) (State, error) {
	switch s {
	case "closed":
		return Closed, nil
	case "open":
		return Open, nil
	case "half_open":
		return HalfOpen, nil
	}
	return 0, fmt.Errorf("unknown breaker state %q", s)
}

// Mode is an operator override: "normal", "forced_open" (refuse everything
// until released) or "disabled" (admit everything, still count).
type Mode string

// The modes a breaker can be in.
const (
	ModeNormal     Mode = "normal"
	ModeForcedOpen Mode = "forced_open"
	ModeDisabled   Mode = "disabled"
)
