package handlers

import (
	"context"
	"log/slog"

	"github.com/pgrelay/pgrelay/relay"
)

// Log is an EventHandler that logs every event at Level, with its id,
// transaction, table, action and key (a custom event: its channel), plus
// the row (payload) when Data is set.
// It is safe for concurrent use.
type Log struct {
	relay.BaseHandler
	// Logger receives the events. Defaults to slog.Default().
	Logger *slog.Logger
	// Level is the level events are logged at. Defaults to Info.
	Level slog.Level
	// Data adds the row and, for updates, the changes to each line.
	Data bool
}

// OnEvent logs e.
func (h *Log) OnEvent(ctx context.Context, e relay.Event) error {
	logger := h.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if !logger.Enabled(ctx, h.Level) {
		return nil
	}
	attrs := []slog.Attr{
		slog.Int64("event_id", e.ID),
		slog.Uint64("txid", e.Txid),
	}
	if e.Action == relay.ActionMessage {
		attrs = append(attrs, slog.String("channel", e.CustomChannel), slog.String("action", string(e.Action)))
	} else {
		attrs = append(attrs, slog.String("table", e.Schema+"."+e.Table),
			slog.String("action", string(e.Action)), slog.String("id", string(e.Key)))
	}
	if h.Data {
		attrs = append(attrs, slog.String("data", string(e.Data)))
		if e.Changes != nil {
			attrs = append(attrs, slog.String("changes", string(e.Changes)))
		}
	}
	logger.LogAttrs(ctx, h.Level, "cdc event", attrs...)
	return nil
}
