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

// Candidates returns every destination a name a user typed may mean. A
// bare name ("users") or one in schema public ("public.users") is a table;
// another dotted one may be a table ("shop.orders") or the channel of
// custom events published under that name (cdc.publish('orders.shipped',
// …)), so it gives both: the table's channel (Resolve) first, then the
// name itself. A name ending in Suffix, or a pattern, is the one
// destination Resolve gives.
func Candidates(name string) []string {
	dest, pattern := Resolve(name)
	name = strings.TrimSpace(name)
	if pattern || dest == name || !strings.Contains(name, ".") || strings.HasPrefix(name, DefaultSchema+".") {
		return []string{dest}
	}
	return []string{dest, name}
}
