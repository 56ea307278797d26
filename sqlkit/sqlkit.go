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
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

// Schema is the PostgreSQL schema that holds pgrelay's tables and functions.
const Schema = "cdc"

// versionTable is tern's bookkeeping table, kept inside the cdc schema.
const versionTable = Schema + ".schema_version"

//go:embed migrations/*.sql
var migrationFiles embed.FS

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

// Migrate brings the cdc schema up to date: it creates the schema if needed
// and applies the embedded migrations that have not been applied yet. It is
// idempotent, and safe when several processes run it at once: they take turns
// under an advisory lock.
func Migrate(ctx context.Context, db DB) error {
	return migrateTo(ctx, db, LatestVersion())
}

// migrateTo is Migrate up to version target only; tests use it to start
// from an older schema.
func migrateTo(ctx context.Context, db DB, target int) error {
	return withConn(ctx, db, func(conn *pgx.Conn) error {
		// Held across tern's own locking so that creating the schema and
		// the version table is serialised too.
		if _, err := conn.Exec(ctx, sqlBootstrap); err != nil {
			return fmt.Errorf("migrate: create schema %s: %w", Schema, err)
		}
		defer conn.Exec(context.WithoutCancel(ctx), sqlUnlock) //nolint:errcheck // best effort; the lock dies with the session
		m, err := migrate.NewMigrator(ctx, conn, versionTable)
		if err != nil {
			return fmt.Errorf("migrate: prepare version table: %w", err)
		}
		if v, err := m.GetCurrentVersion(ctx); err != nil {
			return fmt.Errorf("migrate: read schema version: %w", err)
		} else if latest := LatestVersion(); int(v) > latest {
			return fmt.Errorf("migrate: %w (schema version %d, this pgrelay knows %d)", ErrSchemaTooNew, v, latest)
		}
		sub, err := fs.Sub(migrationFiles, "migrations")
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if err := m.LoadMigrations(sub); err != nil {
			return fmt.Errorf("migrate: load migrations: %w", err)
		}
		if err := m.MigrateTo(ctx, int32(target)); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if target == LatestVersion() {
			return installFunctions(ctx, conn)
		}
		return nil
	})
}

// LatestVersion is the schema version the embedded migrations bring the
// database to.
func LatestVersion() int {
	names, err := migrate.FindMigrations(mustSub(migrationFiles, "migrations"))
	if err != nil {
		panic("sqlkit: embedded migrations: " + err.Error())
	}
	return len(names)
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// SchemaVersion returns the applied schema version, 0 when the cdc schema is
// not installed at all.
func SchemaVersion(ctx context.Context, db DB) (int, error) {
	var exists bool
	if err := db.QueryRow(ctx, sqlSchemaExists).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var version int
	if err := db.QueryRow(ctx, sqlSchemaVer).Scan(&version); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return version, nil
}

// CheckSchema returns ErrNotMigrated unless the cdc schema is installed and
// at the version this package expects, and ErrSchemaTooNew when a newer
// pgrelay has migrated it further.
func CheckSchema(ctx context.Context, db DB) error {
	v, err := SchemaVersion(ctx, db)
	if err != nil {
		return err
	}
	switch latest := LatestVersion(); {
	case v < latest:
		return ErrNotMigrated
	case v > latest:
		return fmt.Errorf("%w (schema version %d, this pgrelay knows %d)", ErrSchemaTooNew, v, latest)
	}
	d, err := installedDigest(ctx, db)
	if err != nil {
		return err
	}
	if d != functionsDigest {
		return fmt.Errorf("%w (the installed functions are another pgrelay's)", ErrNotMigrated)
	}
	return nil
}

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

// Table names a table by its exact schema and table names, as stored in the
// catalog (no quoting, no case folding).
type Table struct {
	// Schema is the table's schema; empty means "first match on the
	// search_path".
	Schema string
	Name   string
}

// String returns the name as SQL would write it: each part quoted only where
// it needs to be, so public.users stays public.users and a table called
// My Table becomes "My Table".
func (t Table) String() string {
	if t.Schema == "" {
		return quoteIdent(t.Name)
	}
	return quoteIdent(t.Schema) + "." + quoteIdent(t.Name)
}

// quoteIdent quotes an identifier when PostgreSQL would not read it back
// unchanged without quotes. Reserved words are quoted too, conservatively,
// when they are in the small list below.
func quoteIdent(s string) string {
	if s != "" && !reservedWords[s] {
		plain := true
		for i, r := range s {
			if !(r == '_' || (r >= 'a' && r <= 'z') || (i > 0 && (r >= '0' && r <= '9' || r == '$'))) {
				plain = false
				break
			}
		}
		if plain {
			return s
		}
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// reservedWords are the keywords most likely to be used as table names; a
// quoted name is always read correctly, so this list only affects looks.
var reservedWords = map[string]bool{
	"all": true, "analyse": true, "analyze": true, "and": true, "any": true, "array": true,
	"as": true, "asc": true, "both": true, "case": true, "cast": true, "check": true,
	"column": true, "constraint": true, "create": true, "default": true, "desc": true,
	"distinct": true, "do": true, "else": true, "end": true, "except": true, "false": true,
	"for": true, "foreign": true, "from": true, "grant": true, "group": true, "having": true,
	"in": true, "into": true, "limit": true, "not": true, "null": true, "offset": true,
	"on": true, "only": true, "or": true, "order": true, "primary": true, "references": true,
	"select": true, "table": true, "then": true, "to": true, "true": true, "union": true,
	"unique": true, "user": true, "using": true, "when": true, "where": true, "with": true,
}

// ParseTable parses a table name written as in SQL: "table" or
// "schema.table", each part either a bare identifier (folded to lower case)
// or a double-quoted one (kept exactly, "" standing for a quote). So
// Users and public.users name the same table, while "My Schema"."My Table"
// keeps its spaces and capitals.
func ParseTable(s string) (Table, error) {
	parts, err := parseQualifiedName(s)
	if err != nil {
		return Table{}, fmt.Errorf("invalid table name %q: %w", s, err)
	}
	switch len(parts) {
	case 1:
		return Table{Name: parts[0]}, nil
	case 2:
		return Table{Schema: parts[0], Name: parts[1]}, nil
	default:
		return Table{}, fmt.Errorf("invalid table name %q: want table or schema.table", s)
	}
}

func parseQualifiedName(s string) ([]string, error) {
	var parts []string
	i := 0
	for {
		if i >= len(s) {
			return nil, errors.New("empty name")
		}
		var part string
		if s[i] == '"' {
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, errors.New("unterminated quoted identifier")
			}
			part = b.String()
			if part == "" {
				return nil, errors.New("zero-length quoted identifier")
			}
		} else {
			start := i
			for i < len(s) && s[i] != '.' && s[i] != '"' {
				i++
			}
			part = s[start:i]
			if part == "" {
				return nil, errors.New("empty name")
			}
			if strings.ContainsAny(part, " \t\r\n;'") {
				return nil, errors.New("unquoted names cannot contain spaces, quotes or semicolons; quote them with double quotes")
			}
			part = foldIdent(part)
		}
		parts = append(parts, part)
		if i == len(s) {
			return parts, nil
		}
		if s[i] != '.' {
			return nil, errors.New("unexpected character after quoted identifier")
		}
		i++
	}
}

// foldIdent lower-cases an unquoted identifier the way PostgreSQL does with
// a UTF-8 database: ASCII letters only.
func foldIdent(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
