package sqlkit

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"

	"github.com/jackc/pgx/v5"
)

// The functions, the trigger function and the views are code, not schema:
// they live in functions/*.sql, each defined once with CREATE OR REPLACE,
// and Migrate installs them after the migrations, in file-name order, when
// the schema is at the latest version (migrations change tables; a changed
// function is simply edited). Only a change of a function's signature or
// result type needs a migration, to drop the old one.

//go:embed functions/*.sql
var functionFiles embed.FS

// functionsSQL is the rendered text of every functions file, in order, and
// functionsDigest its digest, recorded in cdc.code_version.
var functionsSQL, functionsDigest = loadFunctions()

func loadFunctions() ([]string, string) {
	names, err := fs.Glob(functionFiles, "functions/*.sql")
	if err != nil {
		panic("sqlkit: embedded functions: " + err.Error())
	}
	sort.Strings(names)
	h := sha256.New()
	texts := make([]string, len(names))
	for i, name := range names {
		b, err := fs.ReadFile(functionFiles, name)
		if err != nil {
			panic("sqlkit: embedded functions: " + err.Error())
		}
		texts[i] = render(path.Base(name), string(b))
		h.Write([]byte(texts[i]))
	}
	return texts, hex.EncodeToString(h.Sum(nil))[:16]
}

var (
	sqlCodeVersion    = query("code_version")
	sqlSetCodeVersion = query("code_version_set")
)

// installedDigest returns the digest of the installed functions, "" when
// none was recorded.
func installedDigest(ctx context.Context, db DB) (string, error) {
	var d string
	err := db.QueryRow(ctx, sqlCodeVersion).Scan(&d)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the installed functions' version: %w", err)
	}
	return d, nil
}

// installFunctions installs the functions unless this version of them is
// installed already, in one transaction: writers see the old set or the new
// one, never a mix.
func installFunctions(ctx context.Context, conn *pgx.Conn) error {
	if d, err := installedDigest(ctx, conn); err != nil || d == functionsDigest {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("install functions: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	for _, text := range functionsSQL {
		if _, err := tx.Exec(ctx, text); err != nil {
			return fmt.Errorf("install functions: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, sqlSetCodeVersion, functionsDigest); err != nil {
		return fmt.Errorf("install functions: record version: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("install functions: commit: %w", err)
	}
	return nil
}
