package sqlkit

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

// versionTable is tern's bookkeeping table, kept inside the cdc schema.
const versionTable = Schema + ".schema_version"

//go:embed migrations/*.sql
var migrationFiles embed.FS

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
