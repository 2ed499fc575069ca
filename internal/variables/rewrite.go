// Package variables owns the rules for a dashboard's variables and time
// range: how panel SQL refers to them (:name placeholders, rewritten to
// bind parameters by a lexer that knows Postgres quoting), which values a
// viewer may choose, the canonical form of a choice (the view key), and the
// arguments a query is run with. It does no I/O.
package variables

import (
	"fmt"
	"strconv"
	"strings"
)

// Rewrite replaces every :name placeholder in sql for which declared(name)
// is true with a bind parameter ($1, $2, ...; the same name gets the same
// number) and returns the new text and the names in parameter order.
//
// Placeholders are not recognised inside string constants ('...', E'...',
// U&'...', B'...', X'...'), dollar-quoted strings ($$...$$, $tag$...$tag$),
// quoted identifiers ("..."), comments (-- and nested /* */), or after ::
// (a cast). A :name that is not declared is left alone, so an array slice
// such as a[lo:hi] keeps working. Values never enter the text: the caller
// binds them. The text must not use positional parameters ($1) of its own,
// and quotes and comments must be closed.
func Rewrite(sql string, declared func(name string) bool) (query string, params []string, err error) {
	var b strings.Builder
	b.Grow(len(sql) + 8)
	index := make(map[string]int)
	i := 0
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == '\'':
			end, err := skipString(sql, i, false)
			if err != nil {
				return "", nil, err
			}
			b.WriteString(sql[i:end])
			i = end
		case (c == 'E' || c == 'e') && i+1 < len(sql) && sql[i+1] == '\'' && !identByte(sql, i-1):
			end, err := skipString(sql, i+1, true)
			if err != nil {
				return "", nil, err
			}
			b.WriteString(sql[i:end])
			i = end
		case c == '"':
			end, err := skipQuoted(sql, i)
			if err != nil {
				return "", nil, err
			}
			b.WriteString(sql[i:end])
			i = end
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			end := strings.IndexByte(sql[i:], '\n')
			if end < 0 {
				end = len(sql) - i
			}
			b.WriteString(sql[i : i+end])
			i += end
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end, err := skipComment(sql, i)
			if err != nil {
				return "", nil, err
			}
			b.WriteString(sql[i:end])
			i = end
		case c == '$':
			if i+1 < len(sql) && isDigit(sql[i+1]) && !identByte(sql, i-1) {
				return "", nil, fmt.Errorf("positional parameter $%s at byte %d: refer to variables by name (:name)", leadingDigits(sql[i+1:]), i)
			}
			tag, ok := dollarTag(sql, i)
			if !ok || identByte(sql, i-1) {
				// A $ inside an identifier (a$b) or alone.
				b.WriteByte(c)
				i++
				continue
			}
			close := strings.Index(sql[i+len(tag):], tag)
			if close < 0 {
				return "", nil, fmt.Errorf("unterminated dollar-quoted string %s at byte %d", tag, i)
			}
			end := i + len(tag) + close + len(tag)
			b.WriteString(sql[i:end])
			i = end
		case c == ':':
			if i+1 < len(sql) && sql[i+1] == ':' {
				// A cast: the type name after it is never a placeholder.
				b.WriteString("::")
				i += 2
				continue
			}
			n := identLen(sql[i+1:])
			name := sql[i+1 : i+1+n]
			if n == 0 || !declared(name) {
				b.WriteByte(c)
				i++
				continue
			}
			k, ok := index[name]
			if !ok {
				params = append(params, name)
				k = len(params)
				index[name] = k
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(k))
			i += 1 + n
		case identStart(c):
			// Copy a whole word, so that the E of "CASE'" or a name such as
			// "note" is never taken for the start of E'...'.
			n := identLen(sql[i:])
			b.WriteString(sql[i : i+n])
			i += n
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), params, nil
}

// Names returns the :name placeholders of sql that declared accepts, in
// order of first use; Rewrite's rules apply.
func Names(sql string, declared func(name string) bool) ([]string, error) {
	_, params, err := Rewrite(sql, declared)
	return params, err
}

// skipString returns the index after the string constant whose opening
// quote is at sql[open]. With backslash set (E'...'), \ escapes the next
// byte; in both forms a doubled quote stands for one quote.
func skipString(sql string, open int, backslash bool) (int, error) {
	for i := open + 1; i < len(sql); i++ {
		switch sql[i] {
		case '\\':
			if backslash {
				i++
			}
		case '\'':
			if i+1 < len(sql) && sql[i+1] == '\'' {
				i++
				continue
			}
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string constant at byte %d", open)
}

// skipQuoted returns the index after the quoted identifier whose opening
// quote is at sql[open]; "" inside it is one quote.
func skipQuoted(sql string, open int) (int, error) {
	for i := open + 1; i < len(sql); i++ {
		if sql[i] == '"' {
			if i+1 < len(sql) && sql[i+1] == '"' {
				i++
				continue
			}
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated quoted identifier at byte %d", open)
}

// skipComment returns the index after the block comment opening at
// sql[open]. Postgres block comments nest.
func skipComment(sql string, open int) (int, error) {
	depth := 0
	for i := open; i+1 < len(sql); i++ {
		switch {
		case sql[i] == '/' && sql[i+1] == '*':
			depth++
			i++
		case sql[i] == '*' && sql[i+1] == '/':
			depth--
			i++
			if depth == 0 {
				return i + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("unterminated comment at byte %d", open)
}

// dollarTag returns the opening tag ($$ or $tag$) of a dollar-quoted string
// starting at sql[i], if there is one.
func dollarTag(sql string, i int) (string, bool) {
	j := i + 1
	if j < len(sql) && identStart(sql[j]) {
		j += identLen(sql[j:])
	}
	if j < len(sql) && sql[j] == '$' {
		return sql[i : j+1], true
	}
	return "", false
}

// identByte reports whether sql[i] exists and may continue an identifier
// (so a quote or $ right after it belongs to that word).
func identByte(sql string, i int) bool {
	return i >= 0 && i < len(sql) && (identStart(sql[i]) || isDigit(sql[i]) || sql[i] == '$')
}

func identStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// identLen is the length of the identifier at the start of s (0 if none).
// Identifiers in Postgres may contain $ after the first character, but a
// variable name may not, so $ ends it here.
func identLen(s string) int {
	if s == "" || !identStart(s[0]) {
		return 0
	}
	n := 1
	for n < len(s) && (identStart(s[n]) || isDigit(s[n])) {
		n++
	}
	return n
}

func leadingDigits(s string) string {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	return s[:n]
}
