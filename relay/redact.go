package relay

import (
	"net/url"
	"regexp"
)

// keyValuePassword matches password=... in a key=value connection string,
// quoted or not.
var keyValuePassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL returns a database or Redis connection string that is safe to
// log: the password, in either the URL or the key=value form, is replaced by
// "xxxxx". Anything that does not parse is reduced to its scheme.
func RedactURL(s string) string {
	if s == "" {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		if keyValuePassword.MatchString(s) || err == nil && u.Scheme == "" {
			return keyValuePassword.ReplaceAllString(s, "${1}xxxxx")
		}
		return "(unparsable connection string)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
