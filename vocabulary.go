package breakerbox

import "fmt"

// State is a breaker's state as stored in circuit_breaker:{NAME}:state.
// Its zero value is StateClosed. In text (JSON included) it is the wire
// name: "closed", "open" or "half_open".
type State int

// The three states of a breaker.
const (
	// StateClosed admits calls and counts consecutive failures.
	StateClosed State = iota
	// StateOpen refuses calls until the recovery timeout has passed.
	StateOpen
	// StateHalfOpen admits a limited number of probes.
	StateHalfOpen
)

// String returns the wire name: "closed", "open" or "half_open".
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateOpen:
		return "open"
	case StateHalfOpen:
		return "half_open"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// ParseState parses a wire name.
func ParseState(s string) (State, error) {
	switch s {
	case "closed":
		return StateClosed, nil
	case "open":
		return StateOpen, nil
	case "half_open":
		return StateHalfOpen, nil
	}
	return 0, fmt.Errorf("unknown breaker state %q", s)
}

// MarshalText writes the wire name, so JSON shows "open", not 1.
func (s State) MarshalText() ([]byte, error) {
	if s < StateClosed || s > StateHalfOpen {
		return nil, fmt.Errorf("cannot marshal %v", s)
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a wire name.
func (s *State) UnmarshalText(b []byte) error {
	st, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = st
	return nil
}

// Mode is an operator override, stored in the breaker's metrics hash. Its
// value is the wire name.
type Mode string

// The modes a breaker can be in.
const (
	// ModeNormal: the state machine decides.
	ModeNormal Mode = "normal"
	// ModeForcedOpen: every call is refused until an operator releases or
	// resets the breaker.
	ModeForcedOpen Mode = "forced_open"
	// ModeDisabled: every call is admitted (and still counted), and the
	// breaker does not open, until an operator releases or resets it.
	ModeDisabled Mode = "disabled"
)

// String returns the wire name.
func (m Mode) String() string { return string(m) }

// ParseMode parses a wire name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeNormal, ModeForcedOpen, ModeDisabled:
		return m, nil
	}
	return "", fmt.Errorf("unknown breaker mode %q", s)
}

// Action is an operator control, the ACTION argument of the script's
// control operation.
type Action string

// The operator controls.
const (
	// ActionReset: to closed, consecutive counts cleared, overrides lifted.
	// Lifetime totals are kept.
	ActionReset Action = "reset"
	// ActionForceOpen: refuse every call until released or reset.
	ActionForceOpen Action = "force_open"
	// ActionDisable: admit every call, still count, never open, until
	// released or reset.
	ActionDisable Action = "disable"
	// ActionRelease: end force_open (to half-open: probes first) or disable
	// (to closed).
	ActionRelease Action = "release"
)

// String returns the wire name.
func (a Action) String() string { return string(a) }

// ParseAction parses a wire name.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case ActionReset, ActionForceOpen, ActionDisable, ActionRelease:
		return a, nil
	}
	return "", fmt.Errorf("unknown breaker action %q: want reset, force_open, disable or release", s)
}
