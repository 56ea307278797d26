// Package sqlkit is the database side of pgrelay: the schema migrations, the
// capture trigger and the functions that install it, and the queries the
// relay runs against the outbox. All of pgrelay's SQL lives in .sql files
// embedded in this package: migrations/ (numbered, applied once, tables),
// functions/ (re-installed by every Migrate when changed) and queries/; the
// constants they share with the Go code are in constants.go.
//
// Everything is installed into the dedicated schema "cdc". The SQL functions
// are usable from psql as well as from Go:
//
//	SELECT cdc.ensure_cdc_for('public.users');
//	SELECT cdc.ensure_cdc_for(t) FROM cdc.all_tables() t;
//	SELECT cdc.remove_cdc_for('public.users');
package sqlkit

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema is the PostgreSQL schema that holds pgrelay's tables and functions.
const Schema = "cdc"

//go:embed queries/*.sql
var queryFiles embed.FS

// DB is what the functions of this package need from a database handle.
// *pgx.Conn, *pgxpool.Pool and pgx.Tx all satisfy it.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	// ErrNotMigrated means the cdc schema is missing or older than this
	// version of pgrelay: run Migrate (relay migrate) first.
	ErrNotMigrated = errors.New("the cdc schema is not installed or out of date: run `relay migrate` or `relay ensure-cdc`")
	// ErrSchemaTooNew means a newer version of pgrelay has migrated the cdc
	// schema: this version would misread it, so it refuses to.
	ErrSchemaTooNew = errors.New("the cdc schema was upgraded by a newer pgrelay: upgrade this one")
	// ErrTableNotFound means a named table does not exist.
	ErrTableNotFound = errors.New("table does not exist")
	// ErrNoPrimaryKey means a table has no primary key, which CDC needs to
	// key its events.
	ErrNoPrimaryKey = errors.New("table has no primary key")
	// ErrNotCapturable means the relation cannot carry CDC: a view, a
	// temporary table, a partition, or one of pgrelay's own tables.
	ErrNotCapturable = errors.New("relation cannot be captured")
	// ErrInvalidOptions means capture options do not fit the table: an
	// unknown column or action, an excluded primary-key column, or a row
	// filter that does not parse, references other tables or calls a
	// volatile function. The TableError's Detail says which.
	ErrInvalidOptions = errors.New("invalid capture options")
)

// TableError reports why CDC could not be changed on one table. Err is one of
// ErrTableNotFound, ErrNoPrimaryKey, ErrNotCapturable or ErrInvalidOptions;
// Detail is the database's explanation.
type TableError struct {
	Table  Table
	Err    error
	Detail string
}

// Error returns the database's explanation, which names the table.
func (e *TableError) Error() string {
	if e.Detail != "" {
		return e.Detail
	}
	return fmt.Sprintf("%s: %v", e.Table, e.Err)
}

// Unwrap returns the sentinel error that classifies e.
func (e *TableError) Unwrap() error { return e.Err }

// query returns the text of an embedded query file. The set of files is fixed
// at build time, so a missing one is a programming error.
func query(name string) string {
	b, err := fs.ReadFile(queryFiles, "queries/"+name+".sql")
	if err != nil {
		panic("sqlkit: missing embedded query " + name)
	}
	return render(name, string(b))
}

// Queries are read once at start-up rather than per call.
var (
	sqlBootstrap    = query("bootstrap")
	sqlUnlock       = query("unlock")
	sqlSchemaExists = query("schema_exists")
	sqlSchemaVer    = query("schema_version")
	sqlResolveTable = query("resolve_table")
	sqlEnsure       = query("ensure_cdc_for")
	sqlRemove       = query("remove_cdc_for")
	sqlAllTables    = query("all_tables")
	sqlCDCTables    = query("cdc_tables")
)

// withConn runs fn on a single connection taken from db.
func withConn(ctx context.Context, db DB, fn func(*pgx.Conn) error) error {
	switch d := db.(type) {
	case *pgx.Conn:
		return fn(d)
	case pgx.Tx:
		return fn(d.Conn())
	case *pgxpool.Pool:
		c, err := d.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("acquire connection: %w", err)
		}
		defer c.Release()
		return fn(c.Conn())
	default:
		return fmt.Errorf("sqlkit: unsupported database handle %T", db)
	}
}
