// Package handlers holds pgrelay's sinks, the ready-made
// relay.EventHandlers. Log, here, logs each event through slog; each sink
// that talks to another system has its own subpackage with its own Config,
// so that importing one does not pull in the others' clients:
// handlers/redis publishes to Redis pub/sub and appends to Redis streams.
package handlers
