package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
)

// newMemberlistLogger returns a *log.Logger for memberlist whose lines go to logger at the level
// memberlist wrote them with: memberlist logs "[LEVEL] memberlist: message".
func newMemberlistLogger(logger *slog.Logger) *log.Logger {
	return log.New(&slogWriter{logger: logger}, "", 0)
}

// slogWriter turns lines written by a log.Logger into slog records. log.Logger writes one whole
// line per Write; a write without a trailing newline is still taken as one line.
type slogWriter struct {
	mu     sync.Mutex
	logger *slog.Logger
}

func (w *slogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		level, msg := parseMemberlistLine(string(line))
		w.logger.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

// parseMemberlistLine splits "[WARN] memberlist: text" into a level and "text". Lines without a
// known level are logged at INFO, whole.
func parseMemberlistLine(line string) (slog.Level, string) {
	line = strings.TrimSpace(line)
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			known := true
			switch strings.ToUpper(line[1:end]) {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			default:
				known = false
			}
			if known {
				line = strings.TrimSpace(line[end+1:])
			}
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}
