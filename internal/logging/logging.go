// Package logging builds the *slog.Logger the commands use: tint for
// people (coloured only on a terminal), JSON for machines.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"
)

// ParseLevel reads debug, info, warn or error (any case).
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// New returns a logger writing to w in format "text" or "json" at level.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	l, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
	case "text", "":
		return slog.New(tint.NewHandler(w, &tint.Options{
			Level:      l,
			TimeFormat: time.TimeOnly + ".000",
			NoColor:    !isTerminal(w) || os.Getenv("NO_COLOR") != "",
		})), nil
	default:
		return nil, fmt.Errorf("invalid log format %q: want text or json", format)
	}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
