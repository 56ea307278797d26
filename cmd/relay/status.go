package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// tableCapture is one table's capture options in `relay status --json`.
type tableCapture struct {
	Table          string   `json:"table"`
	Actions        []string `json:"actions"`
	IgnoreColumns  []string `json:"ignore_columns"`
	ExcludeColumns []string `json:"exclude_columns"`
	// Where is the row filter as PostgreSQL prints it, "" for none.
	Where string `json:"where"`
}

// describe is the options in one line: "" for the defaults.
func (t tableCapture) describe() string {
	var parts []string
	if len(t.Actions) < 4 {
		parts = append(parts, "actions "+strings.Join(t.Actions, ","))
	}
	if len(t.IgnoreColumns) > 0 {
		parts = append(parts, "ignore "+strings.Join(t.IgnoreColumns, ","))
	}
	if len(t.ExcludeColumns) > 0 {
		parts = append(parts, "exclude "+strings.Join(t.ExcludeColumns, ","))
	}
	if t.Where != "" {
		parts = append(parts, "where "+t.Where)
	}
	return strings.Join(parts, "; ")
}

// statusReport is what `relay status --json` prints.
type statusReport struct {
	SchemaVersion int      `json:"schema_version"`
	Tables        []string `json:"tables"`
	// Capture lists the tables' capture options, in the order of Tables.
	Capture          []tableCapture `json:"capture"`
	Name             string         `json:"name"`
	Pending          int64          `json:"pending"`
	Failed           int64          `json:"failed"`
	Retained         int64          `json:"delivered_retained"`
	OldestPending    *time.Time     `json:"oldest_pending,omitempty"`
	OldestPendingAge float64        `json:"oldest_pending_age_seconds"`
	// Relays are the relays running for Name, the active one first.
	Relays []sqlkit.InstanceStatus `json:"relays"`
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the tables with CDC and the undelivered events",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagName, Usage: "delivery position to report on", EnvVars: []string{"RELAY_NAME"}, Value: relay.DefaultName},
			&cli.BoolFlag{Name: "json", Usage: "print JSON, for scripts"},
		},
		Action: func(c *cli.Context) error {
			var rep statusReport
			err := withDB(c, func(ctx context.Context, conn *pgx.Conn) error {
				return readStatus(ctx, conn, c.String(flagName), &rep)
			})
			if err != nil {
				return err
			}
			return printStatus(c, rep)
		},
	}
}

func readStatus(ctx context.Context, conn *pgx.Conn, name string, rep *statusReport) error {
	if err := sqlkit.CheckSchema(ctx, conn); err != nil {
		return err
	}
	rep.SchemaVersion = sqlkit.LatestVersion()
	rep.Name = name
	tables, err := sqlkit.CapturedTables(ctx, conn)
	if err != nil {
		return err
	}
	rep.Tables = make([]string, len(tables))
	rep.Capture = make([]tableCapture, len(tables))
	for i, t := range tables {
		rep.Tables[i] = t.String()
		rep.Capture[i] = tableCapture{Table: t.String(), Actions: t.Options.Actions,
			IgnoreColumns: t.Options.IgnoreColumns, ExcludeColumns: t.Options.ExcludeColumns, Where: t.Options.Where}
	}
	cur, err := sqlkit.LoadCursor(ctx, conn, name)
	if err != nil {
		return err
	}
	n, oldest, err := sqlkit.Backlog(ctx, conn, cur)
	if err != nil {
		return err
	}
	rep.Pending = n
	if rep.Failed, err = sqlkit.FailedCount(ctx, conn, name); err != nil {
		return err
	}
	size, err := sqlkit.OutboxSize(ctx, conn)
	if err != nil {
		return err
	}
	rep.Retained = max(size-n, 0)
	if rep.Relays, err = sqlkit.RelayInstances(ctx, conn, name); err != nil {
		return err
	}
	if rep.Relays == nil {
		rep.Relays = []sqlkit.InstanceStatus{}
	}
	if !oldest.IsZero() {
		rep.OldestPending = &oldest
		rep.OldestPendingAge = time.Since(oldest).Seconds()
	}
	return nil
}

func printStatus(c *cli.Context, rep statusReport) error {
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(w, "schema version:  %d\n", rep.SchemaVersion)
	fmt.Fprintf(w, "tables with CDC: %d\n", len(rep.Tables))
	for _, t := range rep.Capture {
		if opts := t.describe(); opts != "" {
			fmt.Fprintf(w, "  %s (%s)\n", t.Table, opts)
		} else {
			fmt.Fprintf(w, "  %s\n", t.Table)
		}
	}
	fmt.Fprintf(w, "undelivered (%s): %d\n", rep.Name, rep.Pending)
	fmt.Fprintf(w, "failed (%s): %d\n", rep.Name, rep.Failed)
	fmt.Fprintf(w, "delivered, kept until --retention: %d\n", rep.Retained)
	if rep.OldestPending != nil {
		fmt.Fprintf(w, "oldest undelivered: %s ago\n", time.Duration(rep.OldestPendingAge*float64(time.Second)).Round(time.Millisecond))
	}
	printRelays(w, rep)
	return nil
}

// printRelays lists the relays of the name: which one delivers, since when
// and how fresh its lease is, and which stand by.
func printRelays(w io.Writer, rep statusReport) {
	now := time.Now()
	ago := func(t time.Time) string { return now.Sub(t).Round(time.Millisecond).String() + " ago" }
	running := 0
	for _, r := range rep.Relays {
		if r.Running {
			running++
		}
	}
	fmt.Fprintf(w, "relays (%s): %d running\n", rep.Name, running)
	active := false
	for _, r := range rep.Relays {
		where := fmt.Sprintf("%s pid %d (instance %s)", r.Host, r.PID, r.ID)
		switch {
		case r.Active:
			active = true
			fmt.Fprintf(w, "  active       %s, since %s, lease renewed %s, expires in %s\n", where,
				r.ActiveSince.Format(time.RFC3339), ago(*r.RenewedAt), r.ExpiresAt.Sub(now).Round(time.Millisecond))
		case r.Running:
			fmt.Fprintf(w, "  standing by  %s, seen %s\n", where, ago(r.SeenAt))
		default:
			fmt.Fprintf(w, "  not renewing %s, holds the lease, last seen %s\n", where, ago(r.SeenAt))
		}
	}
	if !active {
		fmt.Fprintln(w, "  no relay is delivering")
	}
}
