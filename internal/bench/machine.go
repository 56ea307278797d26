package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The machine's own speed varies between runs: its cores are shared with
// the host's other guests, and the same build has measured three times
// slower on one afternoon than that morning. Load average does not show
// it; these two figures in the report's header do.

// cpuProbe times a fixed computation on one core (SHA-256 of 64 MiB), the
// best of three, so that reports of different runs can be told apart by
// the machine they ran on before their figures are compared.
func cpuProbe() time.Duration {
	buf := make([]byte, 1<<20)
	best := time.Duration(0)
	for range 3 {
		h := sha256.New()
		start := time.Now()
		for range 64 {
			h.Write(buf)
		}
		h.Sum(nil)
		if d := time.Since(start); best == 0 || d < best {
			best = d
		}
	}
	return best
}

// cpuTicks is the machine's CPU time so far, from /proc/stat's "cpu" line:
// all of it, and what the hypervisor gave other guests while this one
// wanted to run (steal).
type cpuTicks struct {
	total, steal uint64
	ok           bool
}

func readCPUTicks() cpuTicks {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTicks{}
	}
	var t cpuTicks
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTicks{}
		}
		if i < 8 { // guest time is counted in user time already
			t.total += v
		}
		if i == 7 {
			t.steal = v
		}
	}
	t.ok = true
	return t
}

// stealShare describes the share of the machine's CPU time stolen between
// two readings.
func stealShare(from, to cpuTicks) string {
	if !from.ok || !to.ok || to.total <= from.total {
		return "unknown"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(to.steal-from.steal)/float64(to.total-from.total))
}
