package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// Status is the state of delivery for one relay name, as `relay status`
// prints it and the metrics report it; read it with ReadStatus.
type Status struct {
	// SchemaVersion is the cdc schema's version.
	SchemaVersion int `json:"schema_version"`
	// Name is the relay name the figures are for.
	Name string `json:"name"`
	// Tables are the tables with CDC, with their capture options and
	// figures, then any custom events' channels with undelivered or failed
	// events (Schema empty).
	Tables []TableStatus `json:"tables"`
	// Pending and Failed count undelivered and parked events of all tables.
	Pending int64 `json:"pending"`
	Failed  int64 `json:"failed"`
	// Retained counts delivered events kept until Config.Retention (0 when
	// read with StatusOptions.SkipRetained).
	Retained int64 `json:"delivered_retained"`
	// OldestPending is the change time of the oldest undelivered event
	// (nil: none), and OldestPendingAge its age in seconds when read.
	OldestPending    *time.Time `json:"oldest_pending"`
	OldestPendingAge float64    `json:"oldest_pending_age_seconds"`
	// LastDelivery is when a relay of the name last recorded delivered
	// events (nil: never).
	LastDelivery *time.Time `json:"last_delivery"`
	// Relays are the relays running for Name, the active one first.
	Relays []sqlkit.InstanceStatus `json:"relays"`
}

// TableStatus is one table's part of a Status.
type TableStatus struct {
	// Schema and Table name it; for a custom events' channel, Schema is
	// empty and Table is the channel.
	Schema string `json:"schema"`
	Table  string `json:"table"`
	// Captured is false for a table whose CDC was removed with events
	// still undelivered, and for a custom events' channel.
	Captured bool `json:"captured"`
	// Options are its capture options (Actions always listed).
	Actions        []string `json:"actions"`
	IgnoreColumns  []string `json:"ignore_columns"`
	ExcludeColumns []string `json:"exclude_columns"`
	Where          string   `json:"where"`
	// WhereGated says whether the row filter has gates
	// (sqlkit.CaptureOptions.Where).
	WhereGated bool `json:"where_gated"`
	// Pending, Failed, OldestPending, OldestPendingAge: as in Status, for
	// this table.
	Pending          int64      `json:"pending"`
	Failed           int64      `json:"failed"`
	OldestPending    *time.Time `json:"oldest_pending"`
	OldestPendingAge float64    `json:"oldest_pending_age_seconds"`
}

// Name returns the table's name as `relay status` prints it.
func (t TableStatus) Name() string {
	if t.Schema == "" {
		return t.Table
	}
	return sqlkit.Table{Schema: t.Schema, Name: t.Table}.String()
}

// ReadStatus reads the Status of relay name, with the queries the relay
// uses itself. It fails with sqlkit.ErrNotMigrated when the schema is
// missing or out of date.
func ReadStatus(ctx context.Context, db sqlkit.DB, name string) (Status, error) {
	return ReadStatusWith(ctx, db, name, StatusOptions{})
}

// StatusOptions say what ReadStatusWith leaves out.
type StatusOptions struct {
	// SkipRetained leaves Status.Retained at 0 instead of counting the
	// delivered events the outbox still keeps. That count reads the whole
	// outbox, up to Config.Retention's worth of events (a day by default),
	// while everything else in a Status reads only what is undelivered:
	// readers that run every few seconds, such as the metrics, skip it.
	// Defaults to false.
	SkipRetained bool
}

// ReadStatusWith is ReadStatus with options.
func ReadStatusWith(ctx context.Context, db sqlkit.DB, name string, opts StatusOptions) (Status, error) {
	// In a transaction of its own, so that the outbox is read by its
	// indexes whatever its statistics say (sqlkit.AvoidSequentialScans),
	// and ended by a rollback: nothing is written.
	tx, err := db.Begin(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	size := int64(-1)
	if !opts.SkipRetained {
		// All of the outbox, which only a sequential scan reads well; the
		// schema is checked first, as readStatus does.
		if err := sqlkit.CheckSchema(ctx, tx); err != nil {
			return Status{}, err
		}
		if size, err = sqlkit.OutboxSize(ctx, tx); err != nil {
			return Status{}, err
		}
	}
	if err := sqlkit.AvoidSequentialScans(ctx, tx); err != nil {
		return Status{}, err
	}
	st, err := readStatus(ctx, tx, name)
	if err == nil && size >= 0 {
		st.Retained = max(size-st.Pending, 0)
	}
	return st, err
}

// readStatus is ReadStatusWith's reading, but for Retained.
func readStatus(ctx context.Context, db sqlkit.DB, name string) (Status, error) {
	if name == "" {
		name = DefaultName
	}
	st := Status{Name: name, SchemaVersion: sqlkit.LatestVersion(), Tables: []TableStatus{}}
	captured, err := sqlkit.CapturedTables(ctx, db)
	if err != nil {
		return st, err
	}
	index := map[sqlkit.Table]int{}
	for _, t := range captured {
		index[t.Table] = len(st.Tables)
		st.Tables = append(st.Tables, TableStatus{Schema: t.Schema, Table: t.Name, Captured: true,
			Actions: t.Options.Actions, IgnoreColumns: t.Options.IgnoreColumns,
			ExcludeColumns: t.Options.ExcludeColumns, Where: t.Options.Where, WhereGated: t.Gated})
	}
	// table returns t's entry, adding one for a table no longer captured
	// or a custom events' channel.
	table := func(t sqlkit.Table) *TableStatus {
		i, ok := index[t]
		if !ok {
			i = len(st.Tables)
			index[t] = i
			st.Tables = append(st.Tables, TableStatus{Schema: t.Schema, Table: t.Name,
				Actions: []string{}, IgnoreColumns: []string{}, ExcludeColumns: []string{}})
		}
		return &st.Tables[i]
	}

	cur, err := sqlkit.LoadCursor(ctx, db, name)
	if err != nil {
		return st, err
	}
	now := time.Now()
	pending, err := sqlkit.BacklogByTable(ctx, db, cur)
	if err != nil {
		return st, err
	}
	for _, p := range pending {
		ts := table(p.Table)
		ts.Pending = p.Count
		oldest := p.Oldest
		ts.OldestPending, ts.OldestPendingAge = &oldest, now.Sub(oldest).Seconds()
		st.Pending += p.Count
		if st.OldestPending == nil || oldest.Before(*st.OldestPending) {
			st.OldestPending, st.OldestPendingAge = &oldest, now.Sub(oldest).Seconds()
		}
	}
	failed, err := sqlkit.FailedByTable(ctx, db, name)
	if err != nil {
		return st, err
	}
	for _, f := range failed {
		table(f.Table).Failed = f.Count
		st.Failed += f.Count
	}
	last, err := sqlkit.LastDelivery(ctx, db, name)
	if err != nil {
		return st, err
	}
	if !last.IsZero() {
		st.LastDelivery = &last
	}
	if st.Relays, err = sqlkit.RelayInstances(ctx, db, name); err != nil {
		return st, err
	}
	if st.Relays == nil {
		st.Relays = []sqlkit.InstanceStatus{}
	}
	return st, nil
}
