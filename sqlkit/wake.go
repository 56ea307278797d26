package sqlkit

import (
	"context"
	"fmt"
)

var (
	sqlWakeEnter       = query("wake_enter")
	sqlWakeLeave       = query("wake_leave")
	sqlWakeReset       = query("wake_reset")
	sqlWritersInFlight = query("writers_in_flight")
)

// EnterWaiting tells capture triggers that a relay waits for notifications:
// from now on, writers NOTIFY. Follow it with WritersInFlight before relying
// on notifications, for the writers that decided before.
func EnterWaiting(ctx context.Context, db DB) error {
	if _, err := db.Exec(ctx, sqlWakeEnter); err != nil {
		return fmt.Errorf("enter waiting: %w", err)
	}
	return nil
}

// LeaveWaiting undoes one EnterWaiting: a busy relay needs no notifications.
func LeaveWaiting(ctx context.Context, db DB) error {
	if _, err := db.Exec(ctx, sqlWakeLeave); err != nil {
		return fmt.Errorf("leave waiting: %w", err)
	}
	return nil
}

// ResetWaiting forgets the waiting relays that disappeared without
// LeaveWaiting, provided the caller, holding lease, is the only relay with
// an unexpired lease in the database.
func ResetWaiting(ctx context.Context, db DB, lease Lease) error {
	if _, err := db.Exec(ctx, sqlWakeReset, lease.Name, lease.Token); err != nil {
		return fmt.Errorf("reset waiting relays: %w", err)
	}
	return nil
}

// WritersInFlight reports whether another session is writing to the outbox
// in a transaction that has not ended yet.
func WritersInFlight(ctx context.Context, db DB) (bool, error) {
	var busy bool
	if err := db.QueryRow(ctx, sqlWritersInFlight).Scan(&busy); err != nil {
		return false, fmt.Errorf("look for writers in flight: %w", err)
	}
	return busy, nil
}

var sqlChanged = query("changed")

// maxChangedXip bounds how many in-progress transactions Changed checks
// one by one; with more, it answers yes without asking.
const maxChangedXip = 64

// Changed reports whether a fetch now might return something that one made
// under snap did not: a cheap check (it reads no table) that lets a busy
// relay watch the outbox often without asking writers to notify it. It may
// answer yes when nothing new is there, never no when something is.
func Changed(ctx context.Context, db DB, snap Snapshot) (bool, error) {
	if len(snap.Xip) > maxChangedXip {
		return true, nil
	}
	var changed bool
	if err := db.QueryRow(ctx, sqlChanged, snap.Xmax, snap.Xip).Scan(&changed); err != nil {
		return false, fmt.Errorf("look for outbox changes: %w", err)
	}
	return changed, nil
}
