package variables

import (
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// InputError is a choice the dashboard refuses: the answer to the viewer is
// a 400 with Error() as the message, which is safe to show (it names the
// variable and quotes at most about 60 escaped bytes of a value).
type InputError struct {
	// Name is the variable's name, or "from" or "to".
	Name string
	// Reason says what is wrong.
	Reason string
}

func (e *InputError) Error() string {
	if e.Name == "from" || e.Name == "to" {
		return e.Name + ": " + e.Reason
	}
	return "variable " + ref(e.Name) + ": " + e.Reason
}

func inputError(name, format string, args ...any) *InputError {
	return &InputError{Name: name, Reason: fmt.Sprintf(format, args...)}
}

// quoteMax is how much of a value an error message shows, in bytes of its
// escaped form.
const quoteMax = 60

// quote returns s as a Go string literal, cut to about quoteMax bytes of
// escaped text (a cut is marked by … after the closing quote), so that an
// error message never repeats a long or hostile value.
func quote(s string) string {
	if len(s) <= quoteMax/4 {
		return strconv.Quote(s)
	}
	b := []byte{'"'}
	for i := 0; i < len(s); {
		_, n := utf8.DecodeRuneInString(s[i:])
		esc := strconv.Quote(s[i : i+n])
		esc = esc[1 : len(esc)-1]
		if len(b)-1+len(esc) > quoteMax {
			return string(b) + `"…`
		}
		b = append(b, esc...)
		i += n
	}
	return string(append(b, '"'))
}

// namePattern is what a variable may be called: a lowercase SQL identifier
// that :name can refer to without quoting, at most 63 bytes as in Postgres.
var namePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func validName(s string) bool { return namePattern.MatchString(s) }

// ref names a variable in a message: as it is when it is a valid name,
// quoted and cut otherwise.
func ref(name string) string {
	if validName(name) {
		return name
	}
	return quote(name)
}
