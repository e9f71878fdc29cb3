//go:build race

package healthcheck

// raceEnabled scales load tests down under the race detector, which makes every check slow.
const raceEnabled = true
