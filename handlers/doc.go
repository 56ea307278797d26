// Package handlers holds pgrelay's ready-made relay.EventHandlers: Log,
// which logs each event through slog, and Redis, which PUBLISHes each event
// as JSON on "<schema>.<table>.cdc_events".
package handlers
