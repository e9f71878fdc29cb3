package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestParseMemberlistLine(t *testing.T) {
	tests := []struct {
		in    string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1234", slog.LevelDebug, "Stream connection from=127.0.0.1:1234"},
		{"[INFO] memberlist: Marking b as failed", slog.LevelInfo, "Marking b as failed"},
		{"[WARN] memberlist: Refuting a suspect message (from: a)", slog.LevelWarn, "Refuting a suspect message (from: a)"},
		{"[ERR] memberlist: Failed to decrypt", slog.LevelError, "Failed to decrypt"},
		{"[ERROR] memberlist: x", slog.LevelError, "x"},
		{"[ERR] Failed to shutdown transport: boom", slog.LevelError, "Failed to shutdown transport: boom"},
		{"plain text", slog.LevelInfo, "plain text"},
		{"[odd] memberlist: y", slog.LevelInfo, "[odd] memberlist: y"},
		{"[", slog.LevelInfo, "["},
	}
	for _, tt := range tests {
		level, msg := parseMemberlistLine(tt.in)
		if level != tt.level || msg != tt.msg {
			t.Errorf("parseMemberlistLine(%q) = %v %q, want %v %q", tt.in, level, msg, tt.level, tt.msg)
		}
	}
}

func TestMemberlistLoggerToSlog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := newMemberlistLogger(logger)
	l.Printf("[WARN] memberlist: Was able to connect to %s but other probes failed", "b")
	l.Printf("[DEBUG] memberlist: Initiating push/pull sync with: %s", "c")
	out := buf.String()
	if !strings.Contains(out, `level=WARN msg="Was able to connect to b but other probes failed"`) {
		t.Errorf("missing WARN line in %q", out)
	}
	if !strings.Contains(out, `level=DEBUG msg="Initiating push/pull sync with: c"`) {
		t.Errorf("missing DEBUG line in %q", out)
	}
	if strings.Count(out, "\n") != 2 {
		t.Errorf("want 2 records, got %q", out)
	}
}
