package main

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// median returns the middle of vs (the mean of the two middle values for an
// even count), or NaN when vs is empty. vs is not modified.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the p-th (0 < p ≤ 1) nearest-rank percentile of sorted,
// which must be sorted in ascending order, or 0 when it is empty. Nearest
// rank never interpolates, so "p99 = x" means at least 99% of the samples
// were at or below a latency that was actually observed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// ms converts a duration to fractional milliseconds, the unit latencies are
// reported in.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// rate returns n per second of d, guarding against a zero duration.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return math.Inf(1)
	}
	return float64(n) / d.Seconds()
}

// ratios divides a[i] by b[i] pairwise: each comparison round is one ratio,
// so that drift over the run (a checkpoint, another tenant of the machine)
// affects both sides of a ratio alike.
func ratios(a, b []float64) []float64 {
	out := make([]float64, 0, min(len(a), len(b)))
	for i := range min(len(a), len(b)) {
		out = append(out, a[i]/b[i])
	}
	return out
}

// Unit says how a figure's values are printed.
type Unit int

// The units figures are reported in.
const (
	PerSecond Unit = iota // a rate, printed as a whole number with thousands separators
	Millis                // a duration in milliseconds
	Seconds               // a duration in seconds
	MiB                   // a size in mebibytes
	Ratio                 // a dimensionless ratio, printed as 0.62×
	Count                 // a plain count
	Percent               // a share in percent, printed as 0.42%
	Decimal               // a small quantity (a rate below a few per second), printed as 0.40
)

// format prints v in unit u.
func (u Unit) format(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if math.IsInf(v, 0) {
		return "∞"
	}
	switch u {
	case PerSecond, Count:
		return thousands(int64(math.Round(v)))
	case Millis:
		switch {
		case v < 10:
			return strconv.FormatFloat(v, 'f', 2, 64)
		case v < 100:
			return strconv.FormatFloat(v, 'f', 1, 64)
		}
		return strconv.FormatFloat(v, 'f', 0, 64)
	case Seconds:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case MiB:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case Percent:
		return strconv.FormatFloat(v, 'f', 2, 64) + "%"
	case Decimal:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case Ratio:
		if v >= 10 {
			return strconv.FormatFloat(v, 'f', 1, 64) + "×"
		}
		return strconv.FormatFloat(v, 'f', 2, 64) + "×"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// thousands formats n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// plural returns "1 round" or "3 rounds".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// secs prints a duration for prose as "3.3 s" or "60 s".
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Round(100*time.Millisecond).Seconds(), 'f', -1, 64) + " s"
}
