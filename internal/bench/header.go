package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// describe collects the machine and server facts for the report's header.
// Whatever cannot be read is reported as unknown rather than failing the
// run.
func (e *env) describe(ctx context.Context) Header {
	h := Header{
		Date:        time.Now(),
		Cores:       runtime.NumCPU(),
		CPUModel:    procField("/proc/cpuinfo", "model name", "unknown CPU"),
		MemTotal:    memTotal(),
		Go:          runtime.Version(),
		Quick:       e.cfg.quick,
		Postgres:    "unknown",
		PGSettings:  "unknown",
		Redis:       "unknown",
		Revision:    revision(),
		LoadBefore:  loadAverage(),
		ProbeBefore: cpuProbe(),
		RoundTrip:   roundTripProbe(),
	}
	_ = e.pool.QueryRow(ctx, "SELECT version()").Scan(&h.Postgres)
	var settings []string
	for _, name := range []string{"shared_buffers", "fsync", "synchronous_commit", "wal_level", "max_wal_size", "autovacuum"} {
		var v string
		if err := e.pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err == nil {
			settings = append(settings, "`"+name+" = "+v+"`")
		}
	}
	if len(settings) > 0 {
		h.PGSettings = strings.Join(settings, ", ")
	}
	rdb := e.newRedis()
	defer rdb.Close()
	if info, err := rdb.Info(ctx, "server").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				h.Redis = "Redis " + v
			}
		}
	}
	return h
}

// procField returns the value of the first "name: value" line of a /proc
// file, or def.
func procField(path, name, def string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return def
}

// memTotal returns the machine's memory from /proc/meminfo, in GiB.
func memTotal() string {
	f := strings.Fields(procField("/proc/meminfo", "MemTotal", ""))
	if len(f) != 2 || f[1] != "kB" {
		return "unknown"
	}
	kb, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "unknown"
	}
	return strconv.FormatFloat(kb/(1<<20), 'f', 1, 64) + " GiB"
}

// revision names the commit the suite was built from, as "commit abc1234",
// with "-dirty" and the files concerned when tracked files differ from it,
// since the code measured may be changing while the team works. It uses
// read-only git commands only: --no-optional-locks keeps git status from
// refreshing the index (and taking its lock under a colleague's git add),
// while it still compares the contents of files whose stat data changed, so
// a file that was only touched does not count.
func revision() string {
	root, err := moduleRoot()
	if err != nil {
		return "unknown"
	}
	git := func(args ...string) *exec.Cmd {
		cmd := exec.Command("git", append([]string{"--no-optional-locks"}, args...)...)
		cmd.Dir = root
		return cmd
	}
	out, err := git("rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	rev := "commit " + strings.TrimSpace(string(out))
	out, err = git("status", "--porcelain", "--untracked-files=no").Output()
	if err != nil {
		return rev + " (git status failed: whether tracked files had uncommitted changes is unknown)"
	}
	var changed []string
	for _, line := range strings.Split(string(out), "\n") {
		// "XY path", or "XY old -> new" for a rename.
		if len(line) > 3 {
			changed = append(changed, "`"+line[3:]+"`")
		}
	}
	if len(changed) == 0 {
		return rev
	}
	const most = 8
	list := strings.Join(changed[:min(len(changed), most)], ", ")
	if len(changed) > most {
		list += fmt.Sprintf(" and %d more", len(changed)-most)
	}
	return rev + "-dirty (uncommitted changes to tracked files: " + list + ")"
}

// loadAverage returns the 1, 5 and 15 minute load averages: other work on
// the machine is the first suspect when figures vary between runs.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
