// Package route names where events go: the Redis channel, stream, NATS
// subject and so on that a table's events are published on. The relay, every
// sink and the subscriber use it, so that they agree on one naming rule.
// It depends on nothing else in pgrelay.
package route

import "strings"

// Suffix ends every table's destination name.
const Suffix = ".cdc_events"

// DefaultSchema is the schema assumed for a bare table name.
const DefaultSchema = "public"

// Channel returns the destination of a table's events,
// "<schema>.<table>.cdc_events", with the names as they are (unquoted). Redis
// pub/sub channels and streams are both named this way.
func Channel(schema, table string) string {
	return schema + "." + table + Suffix
}

// All is the pattern matching every table's channel.
const All = "*" + Suffix

// Resolve turns what a user typed into a destination name: a bare table
// ("users", meaning public.users) or schema.table gets Suffix added, and a
// name already ending in Suffix is kept as it is. pattern reports whether
// the result contains glob characters (*, ? or [), for SUBSCRIBE versus
// PSUBSCRIBE.
func Resolve(name string) (dest string, pattern bool) {
	dest = strings.TrimSpace(name)
	if !strings.HasSuffix(dest, Suffix) {
		if !strings.Contains(dest, ".") {
			dest = DefaultSchema + "." + dest
		}
		dest += Suffix
	}
	return dest, strings.ContainsAny(dest, "*?[")
}
