package nats

import "strings"

// validSubject reports whether s is a NATS subject: dot-separated non-empty
// tokens without whitespace. With wildcards, a token may be "*", and the
// last one ">"; without, neither may appear as a token.
func validSubject(s string, wildcards bool) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	tokens := strings.Split(s, ".")
	for i, tok := range tokens {
		switch {
		case tok == "":
			return false
		case tok == "*" || tok == ">":
			if !wildcards || (tok == ">" && i != len(tokens)-1) {
				return false
			}
		}
	}
	return true
}

// covers reports whether the subject pattern matches every subject pattern
// sub matches: "*.*.cdc_events" covers "public.users.cdc_events" and
// "a.*.cdc_events", "orders.>" covers "orders.eu.shipped" and "orders.*".
func covers(pattern, sub string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(sub, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) {
			return false
		}
		switch {
		case tok == "*":
			if s[i] == ">" {
				return false
			}
		case tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}

// coveredBy reports whether one of patterns covers sub.
func coveredBy(patterns []string, sub string) bool {
	for _, p := range patterns {
		if covers(p, sub) {
			return true
		}
	}
	return false
}
