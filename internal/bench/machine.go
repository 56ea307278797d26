package main

import (
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"slices"
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

// roundTripProbe times one-byte round trips over a loopback TCP
// connection between two goroutines (the median of three runs of 2,000):
// the wake-ups and system calls every figure here is made of, which a
// loaded host slows far more than computation. Zero if it cannot run.
func roundTripProbe() time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 1)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		ln.Close() // so that Accept returns
		return 0
	}
	defer c.Close()
	const n = 2000
	b := make([]byte, 1)
	var runs []time.Duration
	for range 3 {
		start := time.Now()
		for range n {
			if _, err := c.Write(b); err != nil {
				return 0
			}
			if _, err := c.Read(b); err != nil {
				return 0
			}
		}
		runs = append(runs, time.Since(start)/n)
	}
	slices.Sort(runs)
	return runs[1]
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
