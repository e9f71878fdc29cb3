package healthcheck

// State is where a real server stands in the rise/fall state machine.
type State struct {
	// Up is the current verdict.
	Up bool
	// Streak counts the results in a row that contradict Up (successes while down, failures
	// while up); the verdict flips when it reaches rise (down -> up) or fall (up -> down).
	Streak int
}

// InitialState is the state of a newly checked server: initialState is "up" or "down"
// (anything else, including "", means down).
func InitialState(initialState string) State {
	return State{Up: initialState == "up"}
}

// Next applies one check result to s. It returns the new state and whether the verdict flipped.
// rise and fall below 1 count as 1.
func Next(s State, ok bool, rise, fall int) (State, bool) {
	rise, fall = max(rise, 1), max(fall, 1)
	if ok == s.Up {
		return State{Up: s.Up}, false // the result agrees: any contrary streak is broken
	}
	s.Streak++
	need := fall
	if !s.Up {
		need = rise
	}
	if s.Streak >= need {
		return State{Up: !s.Up}, true
	}
	return s, false
}
