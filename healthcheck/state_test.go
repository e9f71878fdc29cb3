package healthcheck

import "testing"

func TestNext(t *testing.T) {
	tests := []struct {
		name       string
		initial    string
		rise, fall int
		results    string // o = ok, x = failure
		want       string // verdict after each result: U or D
		flips      string // F where the verdict flipped, . elsewhere
	}{
		{"down rises after rise successes", "down", 2, 3, "oo", "DU", ".F"},
		{"a failure breaks the rise streak", "down", 2, 3, "oxoo", "DDDU", "...F"},
		{"up falls after fall failures", "up", 2, 3, "xxx", "UUD", "..F"},
		{"a success breaks the fall streak", "up", 2, 3, "xxoxxx", "UUUUUD", ".....F"},
		{"rise 1 fall 1 follow every result", "down", 1, 1, "oxox", "UDUD", "FFFF"},
		{"default initial state is down", "", 1, 1, "x", "D", "."},
		{"unknown initial state is down", "maybe", 1, 1, "o", "U", "F"},
		{"initial up stays up on success", "up", 2, 3, "ooo", "UUU", "..."},
		{"rise and fall below 1 count as 1", "down", 0, -5, "ox", "UD", "FF"},
		{"full cycle", "down", 2, 2, "ooxxoo", "DUUDDU", ".F.F.F"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := InitialState(tc.initial)
			var got, flips []byte
			for _, r := range []byte(tc.results) {
				var flipped bool
				s, flipped = Next(s, r == 'o', tc.rise, tc.fall)
				v, f := byte('D'), byte('.')
				if s.Up {
					v = 'U'
				}
				if flipped {
					f = 'F'
				}
				got, flips = append(got, v), append(flips, f)
			}
			if string(got) != tc.want || string(flips) != tc.flips {
				t.Errorf("results %s: verdicts %s flips %s, want %s %s", tc.results, got, flips, tc.want, tc.flips)
			}
		})
	}
}

func TestNextStreak(t *testing.T) {
	s, _ := Next(State{Up: true}, false, 2, 3)
	if s != (State{Up: true, Streak: 1}) {
		t.Errorf("after one failure while up: %+v", s)
	}
	s, _ = Next(s, true, 2, 3)
	if s != (State{Up: true}) {
		t.Errorf("a success should reset the streak: %+v", s)
	}
}
