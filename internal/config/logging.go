package config

import (
	"io"
	"log/slog"
)

// LogHandler returns the slog handler LOG_FORMAT and LOG_LEVEL ask for,
// writing to w.
func LogHandler(w io.Writer, format LogFormat, level LogLevel) slog.Handler {
	opts := &slog.HandlerOptions{Level: level.Slog()}
	if format == LogText {
		return slog.NewTextHandler(w, opts)
	}
	return slog.NewJSONHandler(w, opts)
}
