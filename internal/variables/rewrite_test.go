package variables

import (
	"slices"
	"strings"
	"testing"
)

func declared(names ...string) func(string) bool {
	return func(n string) bool { return slices.Contains(names, n) }
}

func TestRewrite(t *testing.T) {
	is := declared("region", "from", "to", "n")
	for _, tc := range []struct {
		in, out string
		params  []string
	}{
		{"SELECT 1", "SELECT 1", nil},
		{"SELECT * FROM t WHERE region = :region", "SELECT * FROM t WHERE region = $1", []string{"region"}},
		{"WHERE r = ANY(:region) AND at >= :from AND at < :to AND r2 = :region",
			"WHERE r = ANY($1) AND at >= $2 AND at < $3 AND r2 = $1", []string{"region", "from", "to"}},
		// A cast is never a placeholder, whatever the type is called.
		{"SELECT x::region, :n::int", "SELECT x::region, $1::int", []string{"n"}},
		{"SELECT ':region'", "SELECT ':region'", nil},
		{"SELECT 'it''s :region'", "SELECT 'it''s :region'", nil},
		{`SELECT E'\' :region', :n`, `SELECT E'\' :region', $1`, []string{"n"}},
		{`SELECT e'\\', :n`, `SELECT e'\\', $1`, []string{"n"}},
		{"SELECT $$ :region $$, :n", "SELECT $$ :region $$, $1", []string{"n"}},
		{"SELECT $fn$ :region $x$ $fn$, :n", "SELECT $fn$ :region $x$ $fn$, $1", []string{"n"}},
		{`SELECT ":region" FROM "a""b:region"`, `SELECT ":region" FROM "a""b:region"`, nil},
		{"SELECT 1 -- :region\n, :n", "SELECT 1 -- :region\n, $1", []string{"n"}},
		{"SELECT /* a /* :region */ :region */ :n", "SELECT /* a /* :region */ :region */ $1", []string{"n"}},
		{"SELECT a[1:2], a[lo:hi], :unknown", "SELECT a[1:2], a[lo:hi], :unknown", nil},
		{"SELECT U&'d\\0061t:region', B'101', X'1F', :n", "SELECT U&'d\\0061t:region', B'101', X'1F', $1", []string{"n"}},
		{"SELECT note, CASE WHEN true THEN 'x' END, :n", "SELECT note, CASE WHEN true THEN 'x' END, $1", []string{"n"}},
		{"SELECT a$b, :regionx, :n", "SELECT a$b, :regionx, $1", []string{"n"}},
		{"SELECT :n+1", "SELECT $1+1", []string{"n"}},
	} {
		got, params, err := Rewrite(tc.in, is)
		if err != nil {
			t.Errorf("Rewrite(%q): %v", tc.in, err)
			continue
		}
		if got != tc.out || !slices.Equal(params, tc.params) {
			t.Errorf("Rewrite(%q) = %q %q, want %q %q", tc.in, got, params, tc.out, tc.params)
		}
	}
}

func TestRewriteRefuses(t *testing.T) {
	is := declared("n")
	for _, tc := range []struct{ in, want string }{
		{"SELECT $1", "positional parameter $1"},
		{"SELECT 'open", "unterminated string"},
		{`SELECT E'\'`, "unterminated string"},
		{`SELECT "open`, "unterminated quoted identifier"},
		{"SELECT $x$ open", "unterminated dollar-quoted string $x$"},
		{"SELECT /* /* */", "unterminated comment"},
	} {
		_, _, err := Rewrite(tc.in, is)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Rewrite(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

// FuzzRewrite checks that the rewrite never panics, only ever replaces
// placeholders, and leaves text without placeholders as it was.
func FuzzRewrite(f *testing.F) {
	for _, s := range []string{"SELECT :n", "SELECT ':n'", "$$:n$$", "/* :n */ :n", "E'\\':n'", `"":n`, "a::n", ":n:n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		out, params, err := Rewrite(sql, declared("n", "m"))
		if err != nil {
			return
		}
		if len(params) == 0 && out != sql {
			t.Fatalf("Rewrite(%q) changed text without placeholders: %q", sql, out)
		}
		if len(params) > 2 {
			t.Fatalf("Rewrite(%q): %d params for 2 names", sql, len(params))
		}
		back := strings.NewReplacer("$1", ":"+first(params, 0), "$2", ":"+first(params, 1)).Replace(out)
		if len(params) > 0 && back != sql && !strings.Contains(sql, "$") {
			t.Fatalf("Rewrite(%q) = %q: replacing back gives %q", sql, out, back)
		}
	})
}

func first(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "?"
}

// FuzzRewriteQuoted puts any text inside each kind of quoting and comment
// Postgres has, followed by one real placeholder: the text must come out
// as it went in (a :name inside is never a parameter) and the placeholder
// must be the only parameter. A lexer that rewrote inside quotes, or lost
// track of where they end, fails here.
func FuzzRewriteQuoted(f *testing.F) {
	for _, s := range []string{":n", "it's :n", `\' :n`, "$$ :n", "*/ :n", "-- :n", `" :n`, "a\nb :m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var wrapped []string
		wrapped = append(wrapped, "'"+strings.ReplaceAll(s, "'", "''")+"'")
		wrapped = append(wrapped, `"`+strings.ReplaceAll(s, `"`, `""`)+`"`)
		wrapped = append(wrapped, "E'"+strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`)+"'")
		if !strings.Contains(s, "$q$") && !strings.HasSuffix(s, "$q") {
			wrapped = append(wrapped, "$q$"+s+"$q$")
		}
		if !strings.Contains(s, "$$") && !strings.HasSuffix(s, "$") {
			wrapped = append(wrapped, "$$"+s+"$$")
		}
		if !strings.ContainsAny(s, "\n") {
			wrapped = append(wrapped, "-- "+s+"\n")
		}
		if !strings.Contains(s, "*/") && !strings.Contains(s, "/*") && !strings.HasSuffix(s, "*") && !strings.HasSuffix(s, "/") {
			wrapped = append(wrapped, "/* "+s+" */")
		}
		for _, w := range wrapped {
			sql := "SELECT " + w + " , :n"
			out, params, err := Rewrite(sql, declared("n", "m"))
			if err != nil {
				t.Fatalf("Rewrite(%q): %v", sql, err)
			}
			if want := "SELECT " + w + " , $1"; out != want || !slices.Equal(params, []string{"n"}) {
				t.Fatalf("Rewrite(%q) = %q %q, want %q [n]", sql, out, params, want)
			}
		}
	})
}
