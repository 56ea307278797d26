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
)

// describe is a table's capture options in one line: "" for the defaults.
func describe(t relay.TableStatus) string {
	if !t.Captured {
		if t.Schema == "" {
			return "custom events"
		}
		return "CDC removed"
	}
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
		w := "where " + t.Where
		if t.WhereGated {
			w += " (gated)"
		}
		parts = append(parts, w)
	}
	return strings.Join(parts, "; ")
}

// errLagging is returned by status --max-lag when the oldest undelivered
// event is older: main exits with status 2 for it.
type errLagging struct{ age, max time.Duration }

func (e errLagging) Error() string {
	return fmt.Sprintf("the oldest undelivered event is %s old, more than --max-lag %s", e.age, e.max)
}

// ExitCode is the status main exits with: 2, which scripts tell from a failure (1).
func (e errLagging) ExitCode() int { return 2 }

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the tables with CDC, undelivered and failed events, and the relays",
		Description: "With --max-lag, exits with status 2 when the oldest undelivered event is older than that " +
			"(after printing), so that it serves as a cron or monitoring check. --json prints the same as " +
			"relay.Status, documented in the README.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagName, Usage: "delivery position to report on", EnvVars: []string{"RELAY_NAME"}, Value: relay.DefaultName},
			&cli.BoolFlag{Name: "json", Usage: "print JSON, for scripts"},
			&cli.DurationFlag{Name: "max-lag", Usage: "exit with status 2 when the oldest undelivered event is older than this (0: never)"},
		},
		Action: func(c *cli.Context) error {
			if c.Duration("max-lag") < 0 {
				return fmt.Errorf("invalid --max-lag %s: it must not be negative", c.Duration("max-lag"))
			}
			var st relay.Status
			err := withDB(c, func(ctx context.Context, conn *pgx.Conn) error {
				var err error
				st, err = relay.ReadStatus(ctx, conn, c.String(flagName))
				return err
			})
			if err != nil {
				return err
			}
			if err := printStatus(c, st); err != nil {
				return err
			}
			age := time.Duration(st.OldestPendingAge * float64(time.Second)).Round(time.Millisecond)
			if limit := c.Duration("max-lag"); limit > 0 && st.OldestPending != nil && age > limit {
				return errLagging{age: age, max: limit}
			}
			return nil
		},
	}
}

func printStatus(c *cli.Context, st relay.Status) error {
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	ago := func(age float64) string {
		return time.Duration(age * float64(time.Second)).Round(time.Millisecond).String()
	}
	captured := 0
	for _, t := range st.Tables {
		if t.Captured {
			captured++
		}
	}
	fmt.Fprintf(w, "schema version:  %d\n", st.SchemaVersion)
	fmt.Fprintf(w, "tables with CDC: %d\n", captured)
	for _, t := range st.Tables {
		line := "  " + t.Name()
		if opts := describe(t); opts != "" {
			line += " (" + opts + ")"
		}
		if t.Pending > 0 || t.Failed > 0 {
			line += fmt.Sprintf(": %d undelivered", t.Pending)
			if t.OldestPending != nil {
				line += ", oldest " + ago(t.OldestPendingAge) + " old"
			}
			if t.Failed > 0 {
				line += fmt.Sprintf(", %d failed", t.Failed)
			}
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "undelivered (%s): %d\n", st.Name, st.Pending)
	fmt.Fprintf(w, "failed (%s): %d\n", st.Name, st.Failed)
	fmt.Fprintf(w, "delivered, kept until --retention: %d\n", st.Retained)
	if st.OldestPending != nil {
		fmt.Fprintf(w, "oldest undelivered: %s ago\n", ago(st.OldestPendingAge))
	}
	if st.LastDelivery != nil {
		fmt.Fprintf(w, "last delivery (%s): %s ago\n", st.Name, time.Since(*st.LastDelivery).Round(time.Millisecond))
	}
	printRelays(w, st)
	return nil
}

// printRelays lists the relays of the name: which one delivers, since when
// and how fresh its lease is, and which stand by.
func printRelays(w io.Writer, rep relay.Status) {
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
