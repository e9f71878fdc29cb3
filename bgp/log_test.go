package bgp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

func TestSlogLogger(t *testing.T) {
	var buf bytes.Buffer
	l := newSlogLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	var _ gobgplog.Logger = l
	l.Warn("peer down", gobgplog.Fields{"Key": "192.0.2.1", "Topic": "Peer"})
	l.Info("config step", gobgplog.Fields{"Topic": "Config"})
	l.Debug("too chatty", nil) // below the default level
	l.Fatal("bug", nil)        // logged, does not exit
	l.Panic("bug2", nil)       // logged, does not panic
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="peer down" component=gobgp Key=192.0.2.1 Topic=Peer`,
		`level=DEBUG msg="config step" component=gobgp Topic=Config`,
		`level=ERROR msg=bug component=gobgp`,
		`level=ERROR msg=bug2 component=gobgp`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "too chatty") {
		t.Errorf("debug logged at info level:\n%s", out)
	}
	l.SetLevel(gobgplog.DebugLevel)
	if l.GetLevel() != gobgplog.DebugLevel {
		t.Errorf("GetLevel = %v", l.GetLevel())
	}
	l.Debug("now shown", nil)
	if !strings.Contains(buf.String(), "now shown") {
		t.Errorf("debug not logged after SetLevel(Debug)")
	}
}
