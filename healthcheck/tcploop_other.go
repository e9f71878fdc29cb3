//go:build !linux

package healthcheck

import "errors"

// loopState is empty where there is no checkLoop.
type loopState struct{}

// newTCPLoop fails outside Linux: the Manager then checks tcp targets with the portable
// Prober (net.Dialer), one goroutine per target.
func newTCPLoop() (checkLoop, error) {
	return nil, errors.ErrUnsupported
}
