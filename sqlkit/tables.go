package sqlkit

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// EnsureCDCFor installs the capture triggers on each table with the default
// options (every action, column and row), in one transaction: either every
// table gets CDC or, on the first error, none does. On a table captured
// with other options, it puts the defaults back. It migrates nothing; call
// Migrate first. The result says, per table, whether triggers were
// installed, updated or already in place.
func EnsureCDCFor(ctx context.Context, db DB, tables ...Table) ([]TableResult, error) {
	return EnsureCDCWith(ctx, db, CaptureOptions{}, tables...)
}

// EnsureCDCWith is EnsureCDCFor with capture options, the same for each
// table; options left at their zero value take their defaults, so that the
// tables end up with exactly opts. Invalid options (an unknown column or
// action, an excluded key column, a bad row filter) are a *TableError wrapping ErrInvalidOptions,
// and no table is changed.
func EnsureCDCWith(ctx context.Context, db DB, opts CaptureOptions, tables ...Table) ([]TableResult, error) {
	args := func(oid uint32) []any { return opts.args(oid) }
	return changeCDC(ctx, db, sqlEnsure, args, tables)
}

// RemoveCDCFor removes the capture triggers from each table, in one
// transaction. Events already in the outbox are still delivered.
func RemoveCDCFor(ctx context.Context, db DB, tables ...Table) ([]TableResult, error) {
	return changeCDC(ctx, db, sqlRemove, func(oid uint32) []any { return []any{oid} }, tables)
}

// TableResult is the outcome of EnsureCDCFor or RemoveCDCFor for one table.
type TableResult struct {
	Table Table
	// Status is "installed", "updated" (other options before), "removed"
	// or "unchanged".
	Status string
}

func changeCDC(ctx context.Context, db DB, stmt string, args func(oid uint32) []any, tables []Table) ([]TableResult, error) {
	if err := CheckSchema(ctx, db); err != nil {
		return nil, err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	results := make([]TableResult, 0, len(tables))
	for _, t := range tables {
		resolved, err := resolveTable(ctx, tx, t)
		if err != nil {
			return nil, err
		}
		var status string
		if err := tx.QueryRow(ctx, stmt, args(resolved.oid)...).Scan(&status); err != nil {
			return nil, tableError(resolved.Table, err)
		}
		results = append(results, TableResult{Table: resolved.Table, Status: status})
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return results, nil
}

type resolvedTable struct {
	Table
	oid uint32
}

// resolveTable finds t in the catalog by exact name; no name is ever parsed
// or interpolated into SQL. An empty schema means the first match on the
// search_path, as an unqualified name would in SQL.
func resolveTable(ctx context.Context, db DB, t Table) (resolvedTable, error) {
	var r resolvedTable
	err := db.QueryRow(ctx, sqlResolveTable, t.Schema, t.Name).Scan(&r.oid, &r.Schema, &r.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, &TableError{Table: t, Err: ErrTableNotFound, Detail: fmt.Sprintf("table %s does not exist", t)}
	}
	if err != nil {
		return r, fmt.Errorf("look up table %s: %w", t, err)
	}
	return r, nil
}

// tableError classifies the errors raised by cdc.check_cdc_target.
func tableError(t Table, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("%s: %w", t, err)
	}
	switch pgErr.Code {
	case "PR001":
		return &TableError{Table: t, Err: ErrNoPrimaryKey, Detail: pgErr.Message}
	case "PR002":
		return &TableError{Table: t, Err: ErrNotCapturable, Detail: pgErr.Message}
	case "PR003":
		return &TableError{Table: t, Err: ErrInvalidOptions, Detail: pgErr.Message}
	case "42P01":
		return &TableError{Table: t, Err: ErrTableNotFound, Detail: pgErr.Message}
	}
	return fmt.Errorf("%s: %w", t, err)
}

// AllTables returns the tables of the given schemas that CDC can be enabled
// on: ordinary and partitioned tables, never views, partitions, temporary
// tables or pgrelay's own. With no schema it lists "public".
func AllTables(ctx context.Context, db DB, schemas ...string) ([]Table, error) {
	if len(schemas) == 0 {
		schemas = []string{"public"}
	}
	return listTables(ctx, db, sqlAllTables, schemas)
}

// CDCTables returns the tables that have CDC installed.
func CDCTables(ctx context.Context, db DB) ([]Table, error) {
	return listTables(ctx, db, sqlCDCTables)
}

func listTables(ctx context.Context, db DB, stmt string, args ...any) ([]Table, error) {
	if err := CheckSchema(ctx, db); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Table, error) {
		var t Table
		err := row.Scan(&t.Schema, &t.Name)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return tables, nil
}
