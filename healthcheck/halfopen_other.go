//go:build !linux

package healthcheck

import "errors"

// halfState is empty where there is no tcp_half_open checkLoop.
type halfState struct{}

// newHalfOpenLoop fails outside Linux: the Manager then checks tcp_half_open targets with a
// TCP connect, like tcp targets.
func newHalfOpenLoop() (checkLoop, error) {
	return nil, errors.ErrUnsupported
}
