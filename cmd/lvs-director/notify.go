package main

import (
	"log/slog"
	"os"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/lvs-director/lvs-director/daemon"
)

// systemdNotifier returns the daemon's Notifier for systemd (Type=notify): each state
// ("READY=1", "RELOADING=1", "STOPPING=1", "WATCHDOG=1", ...) goes as one datagram to
// $NOTIFY_SOCKET. When NOTIFY_SOCKET is unset at the call (not started by systemd, or not
// with Type=notify) it returns a no-op. A failed send is logged and otherwise ignored: the
// director keeps working without its service manager.
func systemdNotifier(log *slog.Logger) daemon.Notifier {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return func(string) {}
	}
	return func(state string) {
		if _, err := sddaemon.SdNotify(false, state); err != nil {
			log.Warn("cannot notify the service manager", "state", state, "err", err)
		}
	}
}

// watchdogFallbackPing is the ping period used when systemd set a watchdog whose
// WATCHDOG_USEC cannot be read: short enough for any sane WatchdogSec.
const watchdogFallbackPing = time.Second

// watchdogInterval returns how often the daemon must send "WATCHDOG=1": half of systemd's
// WatchdogSec (WATCHDOG_USEC), as sd_watchdog_enabled(3) advises, or 0 when no watchdog
// watches this process. The run loop pings after each iteration, so the lead bounds the
// loop's timer by this value when it is > 0. If WATCHDOG_USEC is set but malformed,
// it returns watchdogFallbackPing rather than risking a kill by the watchdog.
func watchdogInterval() time.Duration {
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		return watchdogFallbackPing
	}
	return d / 2
}
