package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// toEvents turns fetched rows into the events handed to handlers.
func toEvents(rows []sqlkit.Row, events []Event) []Event {
	for i := range rows {
		row := &rows[i]
		e := Event{
			ID:        row.ID,
			Txid:      row.Txid,
			Timestamp: row.ChangedAt.UTC(),
			Schema:    row.Schema,
			Table:     row.Table,
			Action:    Action(row.Action),
			Key:       row.Key,
			Data:      row.Data,
			Changes:   row.Changes,
		}
		if e.Action == ActionMessage {
			// The outbox keeps a message's channel as its table name.
			e.CustomChannel, e.Schema, e.Table = row.Table, "", ""
		}
		events = append(events, e)
	}
	return events
}

// Backoff between retries of a failing handler: it doubles from
// minHandlerBackoff up to Config.RetryInterval.
const minHandlerBackoff = 100 * time.Millisecond

// deliver hands events to each handler in turn, retrying a failing handler
// with backoff until it accepts them all, or parks an event that a handler
// refused permanently MaxAttempts times. It returns only when every event
// is accepted or parked, or with errStopped or the context's error when the
// relay is closing or the session failed.
func (s *session) deliver(ctx context.Context, events []Event) error {
	r := s.r
	r.mu.Lock()
	handlers := r.handlers
	r.mu.Unlock()
	lease, _, _ := r.lease.get()
	ctx = WithDelivery(ctx, Delivery{Name: r.cfg.Name, Token: lease.Token})
	for _, h := range handlers {
		rest := events
		backoff := min(minHandlerBackoff, r.cfg.RetryInterval)
		oneByOne := false // after a batch handler's permanent error: find the culprit
		attempts := 0     // tries of rest[0]
		for len(rest) > 0 {
			n, err := deliverTo(ctx, h, rest, oneByOne)
			rest = rest[n:]
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if n > 0 {
				attempts = 0
			}
			attempts++
			var perm *PermanentError
			if errors.As(err, &perm) {
				if _, batch := h.(BatchHandler); batch && !oneByOne {
					oneByOne, attempts = true, 0
					continue
				}
				if attempts >= r.cfg.MaxAttempts {
					s.park(h, rest[0], err, attempts)
					rest, attempts = rest[1:], 0
					continue
				}
			}
			r.observe(Activity{Kind: ActivityHandlerFailed, Err: err, Handler: fmt.Sprintf("%T", h)})
			r.log.Warn("handler failed; retrying", "handler", fmt.Sprintf("%T", h),
				"event_id", rest[0].ID, "attempt", attempts, "retry_in", backoff, "err", err)
			if !r.sleep(ctx, backoff) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return errStopped
			}
			backoff = min(2*backoff, max(r.cfg.RetryInterval, minHandlerBackoff))
		}
	}
	return nil
}

// park sets e aside as failed so that delivery can go on without it; it is
// recorded in cdc.failed_event together with the batch's progress.
func (s *session) park(h EventHandler, e Event, cause error, attempts int) {
	s.r.log.Error("handler refused an event permanently; parking it in cdc.failed_event",
		"handler", fmt.Sprintf("%T", h), "event_id", e.ID, "channel", e.Channel(),
		"attempts", attempts, "err", cause)
	s.r.observe(Activity{Kind: ActivityParked, Events: []Event{e}, Err: cause, Handler: fmt.Sprintf("%T", h)})
	s.parked = append(s.parked, sqlkit.ParkedEvent{
		Row:     outboxRow(&e),
		Handler: fmt.Sprintf("%T", h), Error: cause.Error(), Attempts: attempts,
	})
}

// outboxRow is the outbox's form of e, as parked events keep it: a
// message's channel in the table name.
func outboxRow(e *Event) sqlkit.Row {
	r := sqlkit.Row{
		ID: e.ID, Txid: e.Txid, ChangedAt: e.Timestamp, Schema: e.Schema, Table: e.Table,
		Action: string(e.Action), Key: e.Key, Data: e.Data, Changes: e.Changes,
	}
	if e.Action == ActionMessage {
		r.Schema, r.Table = "", e.CustomChannel
	}
	return r
}
