package sqlkit

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CaptureOptions chooses what of a table is captured (see the README's
// "Capture options"). The zero value captures everything.
type CaptureOptions struct {
	// Actions are the actions captured: "insert", "update", "delete",
	// "truncate". Defaults to all four.
	Actions []string
	// IgnoreColumns are columns whose changes alone emit nothing: an
	// UPDATE that changes only these is not captured, and they are left
	// out of other updates' "changes" (not out of "data"). Defaults to
	// none.
	IgnoreColumns []string
	// ExcludeColumns are never written to the outbox: absent from
	// "data", "changes" and keys. Primary-key columns cannot be excluded.
	// Defaults to none.
	ExcludeColumns []string
	// Where is a row filter, an SQL boolean expression over the table's
	// own columns with immutable built-in functions only, as PostgreSQL's
	// publication row filters: rows it does not hold for are not
	// captured; an UPDATE that takes a row into it is an insert, out of
	// it a delete. Where it cannot fail for any row (comparisons of
	// columns with constants, AND, OR, NOT, IS NULL, IN lists) and the
	// schema was migrated by a superuser, it gets gates (see the README's
	// "Capture options"): rows it rejects then cost no function call, and,
	// as with publication row filters, its columns cannot be dropped or
	// changed in type while it uses them. Defaults to none.
	Where string
}

// args are the arguments of ensure_cdc_for.sql for the table with oid.
func (o CaptureOptions) args(oid uint32) []any {
	orNil := func(s []string) any {
		if s == nil {
			return nil
		}
		return s
	}
	var where any
	if o.Where != "" {
		where = o.Where
	}
	return []any{oid, orNil(o.Actions), orNil(o.IgnoreColumns), orNil(o.ExcludeColumns), where}
}

// IsDefault reports whether o captures everything.
func (o CaptureOptions) IsDefault() bool {
	return len(o.IgnoreColumns) == 0 && len(o.ExcludeColumns) == 0 && o.Where == "" &&
		(o.Actions == nil || len(o.Actions) == 4)
}

// CapturedTable is a table with CDC and its capture options, as the
// database has them: Actions always listed, Where as PostgreSQL printed it.
type CapturedTable struct {
	Table
	Options CaptureOptions
	// Gated says whether the row filter has gates (see
	// CaptureOptions.Where).
	Gated bool
}

var sqlCapturedTables = query("captured_tables")

// CapturedTables returns the tables that have CDC installed, with their
// options.
func CapturedTables(ctx context.Context, db DB) ([]CapturedTable, error) {
	if err := CheckSchema(ctx, db); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, sqlCapturedTables)
	if err != nil {
		return nil, fmt.Errorf("list tables with CDC: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (CapturedTable, error) {
		var t CapturedTable
		var where *string
		err := row.Scan(&t.Schema, &t.Name, &t.Options.Actions, &t.Options.IgnoreColumns, &t.Options.ExcludeColumns, &where, &t.Gated)
		if where != nil {
			t.Options.Where = *where
		}
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tables with CDC: %w", err)
	}
	return tables, nil
}
