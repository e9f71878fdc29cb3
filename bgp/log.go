package bgp

import (
	"context"
	"log/slog"
	"sort"
	"sync/atomic"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogLogger routes GoBGP's log into slog. GoBGP's Fatal and Panic mark what it takes for bugs
// in itself; they are logged at error level and never end the director.
type slogLogger struct {
	l     *slog.Logger
	level atomic.Uint32
}

func newSlogLogger(l *slog.Logger) *slogLogger {
	s := &slogLogger{l: l}
	// GoBGP is chatty at info level (every configuration step); keep its info as debug.
	s.level.Store(uint32(gobgplog.InfoLevel))
	return s
}

func (s *slogLogger) log(level slog.Level, msg string, fields gobgplog.Fields) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	attrs = append(attrs, slog.String("component", "gobgp"))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, fields[k]))
	}
	s.l.LogAttrs(ctx, level, msg, attrs...)
}

func (s *slogLogger) enabled(l gobgplog.LogLevel) bool { return l <= gobgplog.LogLevel(s.level.Load()) }

func (s *slogLogger) Panic(msg string, fields gobgplog.Fields) {
	s.log(slog.LevelError, msg, fields)
}

func (s *slogLogger) Fatal(msg string, fields gobgplog.Fields) {
	s.log(slog.LevelError, msg, fields)
}

func (s *slogLogger) Error(msg string, fields gobgplog.Fields) {
	if s.enabled(gobgplog.ErrorLevel) {
		s.log(slog.LevelError, msg, fields)
	}
}

func (s *slogLogger) Warn(msg string, fields gobgplog.Fields) {
	if s.enabled(gobgplog.WarnLevel) {
		s.log(slog.LevelWarn, msg, fields)
	}
}

func (s *slogLogger) Info(msg string, fields gobgplog.Fields) {
	if s.enabled(gobgplog.InfoLevel) {
		s.log(slog.LevelDebug, msg, fields)
	}
}

func (s *slogLogger) Debug(msg string, fields gobgplog.Fields) {
	if s.enabled(gobgplog.DebugLevel) {
		s.log(slog.LevelDebug, msg, fields)
	}
}

func (s *slogLogger) SetLevel(level gobgplog.LogLevel) { s.level.Store(uint32(level)) }

func (s *slogLogger) GetLevel() gobgplog.LogLevel { return gobgplog.LogLevel(s.level.Load()) }
