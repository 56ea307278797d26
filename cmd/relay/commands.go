package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "install or upgrade the cdc schema (safe to run any number of times)",
		Action: func(c *cli.Context) error {
			return withDB(c, func(ctx context.Context, conn *pgx.Conn) error {
				if err := sqlkit.Migrate(ctx, conn); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "cdc schema is at version %d\n", sqlkit.LatestVersion())
				return nil
			})
		},
	}
}

func ensureCDCCommand() *cli.Command {
	return &cli.Command{
		Name:      "ensure-cdc",
		Usage:     "capture changes of tables (migrates first if needed)",
		ArgsUsage: "[TABLE ...]  (table or schema.table; quote names as in SQL: '\"My Table\"')",
		Description: "Sets exactly the capture options given, each table's the same; an option left out " +
			"takes its default (everything is captured). Prints installed, updated or unchanged per table.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "schema", Usage: "schemas for --all-tables (repeatable)", Value: cli.NewStringSlice("public")},
			&cli.BoolFlag{Name: "all-tables", Usage: "every table of the --schema schemas"},
			&cli.StringSliceFlag{Name: "actions", Usage: "capture only these of insert, update, delete, truncate (comma-separated)", DefaultText: "all"},
			&cli.StringSliceFlag{Name: "ignore-columns", Usage: "an UPDATE changing only these columns emits nothing; left out of changes, kept in data", DefaultText: "none"},
			&cli.StringSliceFlag{Name: "exclude-columns", Usage: "never write these columns to the outbox (not in data, changes or keys)", DefaultText: "none"},
			&cli.StringFlag{Name: "where", Usage: "row filter: an SQL condition on the table's columns, as PostgreSQL publication row filters", DefaultText: "none"},
		},
		Action: changeTables(tableChange{
			prepare: sqlkit.Migrate,
			all: func(ctx context.Context, c *cli.Context, db sqlkit.DB) ([]sqlkit.Table, error) {
				return sqlkit.AllTables(ctx, db, c.StringSlice("schema")...)
			},
			none: "no tables found",
			change: func(ctx context.Context, c *cli.Context, db sqlkit.DB, tables ...sqlkit.Table) ([]sqlkit.TableResult, error) {
				return sqlkit.EnsureCDCWith(ctx, db, captureOptions(c), tables...)
			},
		}),
	}
}

func removeCDCCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove-cdc",
		Usage:     "stop capturing changes of tables (pending events are still delivered)",
		ArgsUsage: "[TABLE ...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all-tables", Usage: "every table that has CDC"},
		},
		Action: changeTables(tableChange{
			prepare: func(context.Context, sqlkit.DB) error { return nil },
			all: func(ctx context.Context, _ *cli.Context, db sqlkit.DB) ([]sqlkit.Table, error) {
				return sqlkit.CDCTables(ctx, db)
			},
			none: "no tables have CDC",
			change: func(ctx context.Context, _ *cli.Context, db sqlkit.DB, tables ...sqlkit.Table) ([]sqlkit.TableResult, error) {
				return sqlkit.RemoveCDCFor(ctx, db, tables...)
			},
		}),
	}
}

// tableChange is what ensure-cdc and remove-cdc differ in.
type tableChange struct {
	prepare func(ctx context.Context, db sqlkit.DB) error
	// all lists the tables --all-tables means.
	all    func(ctx context.Context, c *cli.Context, db sqlkit.DB) ([]sqlkit.Table, error)
	none   string // printed when there is nothing to change
	change func(ctx context.Context, c *cli.Context, db sqlkit.DB, tables ...sqlkit.Table) ([]sqlkit.TableResult, error)
}

// captureOptions reads ensure-cdc's option flags; a flag not given is nil,
// the default.
func captureOptions(c *cli.Context) sqlkit.CaptureOptions {
	list := func(name string) []string {
		if !c.IsSet(name) {
			return nil
		}
		out := []string{}
		for _, v := range c.StringSlice(name) {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
		return out
	}
	return sqlkit.CaptureOptions{
		Actions:        list("actions"),
		IgnoreColumns:  list("ignore-columns"),
		ExcludeColumns: list("exclude-columns"),
		Where:          c.String("where"),
	}
}

// changeTables is the action of ensure-cdc and remove-cdc: it changes the
// named tables (and with --all-tables the listed ones) in one transaction,
// printing a line per table.
func changeTables(tc tableChange) cli.ActionFunc {
	return func(c *cli.Context) error {
		tables, err := tableArgs(c)
		if err != nil {
			return err
		}
		return withDB(c, func(ctx context.Context, conn *pgx.Conn) error {
			if err := tc.prepare(ctx, conn); err != nil {
				return err
			}
			if c.Bool("all-tables") {
				all, err := tc.all(ctx, c, conn)
				if err != nil {
					return err
				}
				tables = append(tables, all...)
			}
			if len(tables) == 0 {
				fmt.Fprintln(c.App.Writer, tc.none)
				return nil
			}
			results, err := tc.change(ctx, c, conn, tables...)
			if err != nil {
				return err
			}
			for _, r := range results {
				fmt.Fprintf(c.App.Writer, "%s: %s\n", r.Table, r.Status)
			}
			return nil
		})
	}
}

// tableArgs parses the TABLE arguments; with none, --all-tables is required.
func tableArgs(c *cli.Context) ([]sqlkit.Table, error) {
	if c.NArg() == 0 && !c.Bool("all-tables") {
		return nil, fmt.Errorf("name at least one table, or use --all-tables (see %s --help)", c.Command.HelpName)
	}
	tables := make([]sqlkit.Table, 0, c.NArg())
	for _, arg := range c.Args().Slice() {
		t, err := sqlkit.ParseTable(arg)
		if err != nil {
			return nil, err
		}
		tables = append(tables, t)
	}
	return tables, nil
}

// flagError names the command-line flag behind a Config validation error.
func flagError(err error) error {
	for field, flag := range map[string]string{
		"Config.DatabaseURL":      "--database-url",
		"Config.BatchSize":        "--batch-size",
		"Config.RetryInterval":    "--retry-interval",
		"Config.WatchdogInterval": "--watchdog-interval",
		"Config.Timeout":          "--timeout",
		"Config.PollInterval":     "--poll-interval",
		"Config.MaxAttempts":      "--max-attempts",
	} {
		if msg := err.Error(); len(msg) >= len(field) && msg[:len(field)] == field {
			return errors.New(flag + msg[len(field):])
		}
	}
	return err
}

func retryFailedCommand() *cli.Command {
	return &cli.Command{
		Name:  "retry-failed",
		Usage: "put the events a handler refused permanently back into the outbox",
		Description: "They are delivered again as new events (new event_id and txid, same timestamp), " +
			"to every relay name.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagName, Usage: "relay whose failed events to re-queue", EnvVars: []string{"RELAY_NAME"}, Value: relay.DefaultName},
		},
		Action: func(c *cli.Context) error {
			return withDB(c, func(ctx context.Context, conn *pgx.Conn) error {
				if err := sqlkit.CheckSchema(ctx, conn); err != nil {
					return err
				}
				n, err := sqlkit.RequeueFailed(ctx, conn, c.String(flagName))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "re-queued %d failed events\n", n)
				return nil
			})
		},
	}
}
