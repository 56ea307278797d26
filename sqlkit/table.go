package sqlkit

import (
	"errors"
	"fmt"
	"strings"
)

// Table names a table by its exact schema and table names, as stored in the
// catalog (no quoting, no case folding).
type Table struct {
	// Schema is the table's schema; empty means "first match on the
	// search_path".
	Schema string
	Name   string
}

// String returns the name as SQL would write it: each part quoted only where
// it needs to be, so public.users stays public.users and a table called
// My Table becomes "My Table".
func (t Table) String() string {
	if t.Schema == "" {
		return quoteIdent(t.Name)
	}
	return quoteIdent(t.Schema) + "." + quoteIdent(t.Name)
}

// quoteIdent quotes an identifier when PostgreSQL would not read it back
// unchanged without quotes. Reserved words are quoted too, conservatively,
// when they are in the small list below.
func quoteIdent(s string) string {
	if s != "" && !reservedWords[s] {
		plain := true
		for i, r := range s {
			if !(r == '_' || (r >= 'a' && r <= 'z') || (i > 0 && (r >= '0' && r <= '9' || r == '$'))) {
				plain = false
				break
			}
		}
		if plain {
			return s
		}
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// reservedWords are the keywords most likely to be used as table names; a
// quoted name is always read correctly, so this list only affects looks.
var reservedWords = map[string]bool{
	"all": true, "analyse": true, "analyze": true, "and": true, "any": true, "array": true,
	"as": true, "asc": true, "both": true, "case": true, "cast": true, "check": true,
	"column": true, "constraint": true, "create": true, "default": true, "desc": true,
	"distinct": true, "do": true, "else": true, "end": true, "except": true, "false": true,
	"for": true, "foreign": true, "from": true, "grant": true, "group": true, "having": true,
	"in": true, "into": true, "limit": true, "not": true, "null": true, "offset": true,
	"on": true, "only": true, "or": true, "order": true, "primary": true, "references": true,
	"select": true, "table": true, "then": true, "to": true, "true": true, "union": true,
	"unique": true, "user": true, "using": true, "when": true, "where": true, "with": true,
}

// ParseTable parses a table name written as in SQL: "table" or
// "schema.table", each part either a bare identifier (folded to lower case)
// or a double-quoted one (kept exactly, "" standing for a quote). So
// Users and public.users name the same table, while "My Schema"."My Table"
// keeps its spaces and capitals.
func ParseTable(s string) (Table, error) {
	parts, err := parseQualifiedName(s)
	if err != nil {
		return Table{}, fmt.Errorf("invalid table name %q: %w", s, err)
	}
	switch len(parts) {
	case 1:
		return Table{Name: parts[0]}, nil
	case 2:
		return Table{Schema: parts[0], Name: parts[1]}, nil
	default:
		return Table{}, fmt.Errorf("invalid table name %q: want table or schema.table", s)
	}
}

func parseQualifiedName(s string) ([]string, error) {
	var parts []string
	i := 0
	for {
		if i >= len(s) {
			return nil, errors.New("empty name")
		}
		var part string
		if s[i] == '"' {
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, errors.New("unterminated quoted identifier")
			}
			part = b.String()
			if part == "" {
				return nil, errors.New("zero-length quoted identifier")
			}
		} else {
			start := i
			for i < len(s) && s[i] != '.' && s[i] != '"' {
				i++
			}
			part = s[start:i]
			if part == "" {
				return nil, errors.New("empty name")
			}
			if strings.ContainsAny(part, " \t\r\n;'") {
				return nil, errors.New("unquoted names cannot contain spaces, quotes or semicolons; quote them with double quotes")
			}
			part = foldIdent(part)
		}
		parts = append(parts, part)
		if i == len(s) {
			return parts, nil
		}
		if s[i] != '.' {
			return nil, errors.New("unexpected character after quoted identifier")
		}
		i++
	}
}

// foldIdent lower-cases an unquoted identifier the way PostgreSQL does with
// a UTF-8 database: ASCII letters only.
func foldIdent(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
