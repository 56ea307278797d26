package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Target is the figure a measurement aims for. Targets are never assertions:
// the report only says whether the median met them.
type Target struct {
	// AtMost is true for "lower is better" figures (latency, memory).
	AtMost bool
	Value  float64
}

// met reports whether v satisfies the target.
func (t Target) met(v float64) bool {
	if t.AtMost {
		return v <= t.Value
	}
	return v >= t.Value
}

// text prints the target in the figure's unit.
func (t Target) text(u Unit) string {
	if t.AtMost {
		return "≤ " + u.format(t.Value)
	}
	return "≥ " + u.format(t.Value)
}

// Figure is one reported quantity: one value per round, summarised as median,
// min and max.
type Figure struct {
	Name   string
	Unit   Unit
	Values []float64
	// Target, when set, is checked against the median.
	Target *Target
}

// Table is a free-form table for details that are not round summaries, such
// as the backlog samples of the sustained-load run.
type Table struct {
	Caption string
	Header  []string
	Rows    [][]string
}

// Section is the report of one measurement.
type Section struct {
	// Key is the name -only selects the measurement by.
	Key   string
	Title string
	// About says what was measured and how, in a sentence or two.
	About   string
	Figures []Figure
	Tables  []Table
	Notes   []string
	// Met, when set, overrides the per-figure verdicts for a section whose
	// target is not a threshold on one median (sustained load).
	Verdict *Verdict
	// Err is set when the measurement could not complete.
	Err error
}

// Verdict is a target that is judged on something other than one median.
type Verdict struct {
	Target string
	Met    bool
	Detail string
}

// add appends a figure and returns it, so that callers can attach a target.
func (s *Section) add(name string, u Unit, values []float64) *Figure {
	s.Figures = append(s.Figures, Figure{Name: name, Unit: u, Values: values})
	return &s.Figures[len(s.Figures)-1]
}

// note appends a line to the section's notes.
func (s *Section) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// Header is the run's context, printed at the top of the report.
type Header struct {
	Date       time.Time
	Cores      int
	CPUModel   string
	MemTotal   string
	Postgres   string
	PGSettings string
	Redis      string
	Go         string
	Revision   string
	Command    string
	Quick      bool
	Duration   time.Duration
	LoadBefore string
	LoadAfter  string
	// ProbeBefore and ProbeAfter are cpuProbe's times, RoundTrip
	// roundTripProbe's before the run; Steal the share of CPU time stolen
	// by the hypervisor during the run.
	ProbeBefore, ProbeAfter, RoundTrip time.Duration
	Steal                              string
}

// writeReport renders the whole report as Markdown.
func writeReport(w io.Writer, h Header, sections []*Section) error {
	var b strings.Builder
	b.WriteString("# pgrelay benchmarks\n\n")
	if h.Quick {
		b.WriteString("> **Quick smoke run** (`-quick`): fewer rounds and smaller sizes; the figures are indicative only.\n\n")
	}
	fmt.Fprintf(&b, "- **Date:** %s\n", h.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- **Machine:** %d cores (`runtime.NumCPU`), %s, %s RAM; load average (1, 5, 15 min) before the run: %s, after: %s\n",
		h.Cores, h.CPUModel, h.MemTotal, h.LoadBefore, h.LoadAfter)
	fmt.Fprintf(&b, "- **Machine speed:** SHA-256 of 64 MiB on one core (best of 3) took %s before the run and %s after; "+
		"a one-byte round trip over loopback TCP between two goroutines took %s before it; CPU time stolen by the "+
		"hypervisor for other guests during the run: %s (the cores are shared: compare reports only where these "+
		"are alike)\n",
		h.ProbeBefore.Round(time.Millisecond), h.ProbeAfter.Round(time.Millisecond),
		h.RoundTrip.Round(100*time.Nanosecond), h.Steal)
	fmt.Fprintf(&b, "- **PostgreSQL:** %s\n", h.Postgres)
	fmt.Fprintf(&b, "- **PostgreSQL settings:** %s\n", h.PGSettings)
	fmt.Fprintf(&b, "- **Redis:** %s\n", h.Redis)
	fmt.Fprintf(&b, "- **Go:** %s\n", h.Go)
	fmt.Fprintf(&b, "- **pgrelay:** %s\n", h.Revision)
	fmt.Fprintf(&b, "- **Command:** `./test.sh bench` (this run: `%s`)\n", h.Command)
	fmt.Fprintf(&b, "- **Run time:** %s\n\n", h.Duration.Round(time.Second))
	b.WriteString("PostgreSQL, Redis, the relay, the writers and the subscriber all share the machine, " +
		"so every figure includes their competition for the same cores. Each figure is the median " +
		"of several rounds, with min and max; comparisons were measured in the same run, alternating " +
		"the two sides round by round, and are quoted as ratios of the paired rounds. Targets are not " +
		"assertions: the report only says whether the median met them.\n\n")

	for i, s := range sections {
		fmt.Fprintf(&b, "## %d. %s (`%s`)\n\n", i+1, s.Title, s.Key)
		if s.About != "" {
			b.WriteString(s.About + "\n\n")
		}
		if s.Err != nil {
			fmt.Fprintf(&b, "**Not completed:** %s\n\n", oneLine(s.Err.Error()))
		}
		if len(s.Figures) > 0 {
			b.WriteString("| figure | median | min | max | target | met? |\n")
			b.WriteString("| --- | ---: | ---: | ---: | --- | --- |\n")
			for _, f := range s.Figures {
				writeFigure(&b, f)
			}
			b.WriteString("\n")
		}
		if v := s.Verdict; v != nil {
			fmt.Fprintf(&b, "**Target:** %s: **%s**. %s\n\n", v.Target, metText(v.Met), v.Detail)
		}
		for _, t := range s.Tables {
			writeTable(&b, t)
		}
		if len(s.Notes) > 0 {
			fmt.Fprintf(&b, "Notes: %s\n\n", strings.Join(s.Notes, " "))
		}
	}
	b.WriteString(triedLink)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeFigure(b *strings.Builder, f Figure) {
	lo, hi := minMax(f.Values)
	med := median(f.Values)
	target, met := "", ""
	if f.Target != nil {
		target = f.Target.text(f.Unit)
		if len(f.Values) > 0 {
			met = metText(f.Target.met(med))
		}
	}
	fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n",
		f.Name, f.Unit.format(med), f.Unit.format(lo), f.Unit.format(hi), target, met)
}

func writeTable(b *strings.Builder, t Table) {
	if t.Caption != "" {
		b.WriteString(t.Caption + "\n\n")
	}
	b.WriteString("| " + strings.Join(t.Header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(t.Header)) + "\n")
	for _, r := range t.Rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\n")
}

func metText(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func minMax(vs []float64) (lo, hi float64) {
	if len(vs) == 0 {
		return median(nil), median(nil)
	}
	lo, hi = vs[0], vs[0]
	for _, v := range vs[1:] {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// oneLine keeps an error message on one Markdown line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// triedLink ends the report. The engineers' account of what was tried lives
// in tried.md, each entry with its date and the commit its figures came
// from; the report links to it rather than copying it, so that a report
// never presents figures of other runs and other commits as its own.
const triedLink = "## What was tried\n\n" +
	"What was tried to reach the targets, and what bounds the figures that miss them, is kept in " +
	"[internal/bench/tried.md](internal/bench/tried.md), each entry with its date and the commit its figures " +
	"came from. Those figures are from other runs than this report's.\n"
