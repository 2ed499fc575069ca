package provision

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("testdata/sales.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Parse("sales.yaml", data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	zero := 0
	want := &panel.Dashboard{
		Slug: "sales", Title: "Sales", Description: "Orders and revenue by region", Public: true,
		TimeZone: "Europe/Paris", Refresh: time.Minute, MaxRefreshHz: 2,
		Time: &panel.TimeRange{From: "now-6h", To: "now"},
		Variables: []panel.Variable{
			{Name: "region", Label: "Region", Kind: panel.QueryVariable, SQL: "SELECT DISTINCT region FROM orders ORDER BY 1", Multi: true},
			{Name: "customer", Kind: panel.QueryVariable, SQL: "SELECT name FROM customers WHERE region = ANY(:region) ORDER BY 1"},
			{Name: "status", Kind: panel.ListVariable, Options: []string{"open", "closed"}, Default: []string{"open"}},
		},
		Panels: []*panel.Def{{
			Slug: "revenue", Title: "Revenue", Kind: panel.Stat,
			SQL:   "SELECT sum(amount) FROM orders WHERE region = ANY(:region) AND created_at >= :from AND created_at < :to\n",
			Width: 2, Height: 1, Options: panel.Options{Prefix: "$", Decimals: &zero}, DependsOn: []string{"public.orders"},
		}, {
			Slug: "orders", Title: "Orders", Kind: panel.Table, SQL: "SELECT id, amount\nFROM orders\nWHERE status = ANY(:status)\n",
			Position: 1, Width: 1, Height: 1,
		}},
	}
	hash, err := Hash(want)
	if err != nil {
		t.Fatal(err)
	}
	want.Source = &panel.Source{File: "sales.yaml", Hash: hash}
	if !reflect.DeepEqual(doc.Dashboard, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", doc.Dashboard, want)
	}
	for path, line := range map[string]int{"slug": 2, "panels[0].sql": 19, "panels[1]": 25, "variables[2]": 14, "panels[1].nosuch": 25} {
		if got := doc.Line(path); got != line {
			t.Errorf("Line(%q): got %d, want %d", path, got, line)
		}
	}
	// Lines of a literal block map to lines of the file.
	if got := doc.sqlLine("panels[1].sql", 2); got != 31 {
		t.Errorf("sqlLine(panels[1].sql, 2): got %d, want 31", got)
	}
}

// TestParseProblems: every problem is file:line: message, at the line of
// the value at fault, and every problem of a file is reported at once.
func TestParseProblems(t *testing.T) {
	long := strings.Repeat("é", 201)
	tests := []struct {
		name string
		yaml string
		want []string // problems, exactly, in order
	}{
		{"unknown keys", "slug: a\ntitle: A\ncolour: red\npanels:\n  - slug: p\n    title: P\n    kind: stat\n    sql: SELECT 1\n    widht: 2\n",
			[]string{"f.yaml:3: colour: unknown key; known keys here: slug, title, description, visibility, time_zone, refresh, max_refresh_hz, position, time, variables, panels",
				"f.yaml:9: panels[0].widht: unknown key; known keys here: slug, title, kind, sql, grid, options, depends_on"}},
		{"unknown option", "slug: a\ntitle: A\npanels:\n  - {slug: p, title: P, kind: stat, sql: SELECT 1, options: {prefx: $}}\n",
			[]string{"f.yaml:4: panels[0].options.prefx: unknown key; known keys here: unit, prefix, decimals, sparkline, delta, limit, stacked, thresholds, min, max, gap, columns"}},
		{"syntax error keeps the parser's line", "slug: a\ntitle: A: B\n", []string{"f.yaml:2: mapping values are not allowed in this context"}},
		{"bad indentation", "slug: a\ntitle: A\npanels:\n  - slug: p\n   title: P\n", []string{"f.yaml:3: did not find expected '-' indicator"}},
		{"unclosed quote", "slug: a\ntitle: 'A\n", []string{"f.yaml:2: found unexpected end of stream"}},
		{"tab indentation", "slug: a\n\ttitle: A\n", []string{"f.yaml:2: found a tab character that violates indentation"}},
		{"missing keys", "description: x\npanels:\n  - slug: p\n    kind: stat\n",
			[]string{"f.yaml:1: the dashboard: missing key slug", "f.yaml:1: the dashboard: missing key title",
				"f.yaml:3: panels[0]: missing key title", "f.yaml:3: panels[0]: missing key sql"}},
		{"key twice", "slug: a\ntitle: A\ntitle: B\n", []string{"f.yaml:3: title: given twice (first at line 2)"}},
		{"wrong types", "slug: a\ntitle: [A]\nposition: first\nmax_refresh_hz: fast\npanels: {slug: p}\n",
			[]string{"f.yaml:2: title: want text, got a list", "f.yaml:3: position: want a whole number, got \"first\"",
				"f.yaml:4: max_refresh_hz: want a number, got \"fast\"", "f.yaml:5: panels: want a list, got a mapping"}},
		{"bool", "slug: a\ntitle: A\nvariables:\n  - {name: v, kind: list, options: [x], multi: yes}\n",
			[]string{"f.yaml:4: variables[0].multi: want true or false, got \"yes\""}},
		{"rules of the schema", "slug: Sales\ntitle: " + long + "\nvisibility: secret\ntime_zone: Mars/Olympus\nrefresh: 90ms\nmax_refresh_hz: 0\n" +
			"time: {from: now-6h}\npanels:\n  - slug: p\n    title: P\n    kind: pie\n    sql: SELECT 1\n    grid: {width: 5, height: 0}\n",
			[]string{
				`f.yaml:1: slug: "Sales" is not a slug: 1 to 63 lower-case letters, digits and dashes, starting with a letter or digit`,
				"f.yaml:2: title: has 201 characters, at most 200 allowed",
				`f.yaml:3: visibility: "secret" is not one of public, private`,
				`f.yaml:4: time zone "Mars/Olympus": not an IANA zone name`,
				`f.yaml:5: refresh: "90ms" is not a duration in whole seconds such as 30s, 5m or 1h30m`,
				"f.yaml:6: max_refresh_hz: must be above 0, got 0",
				"f.yaml:7: time: missing key to",
				`f.yaml:11: panels[0].kind: "pie" is not one of stat, table, timeseries, bar, feed`,
				"f.yaml:13: panels[0].grid.width: must be between 1 and 4, got 5",
				"f.yaml:13: panels[0].grid.height: must be between 1 and 4, got 0",
			}},
		{"refresh range", "slug: a\ntitle: A\nrefresh: 25h\n", []string{"f.yaml:3: refresh: must be between 1s and 24h, got 25h"}},
		{"local time zone", "slug: a\ntitle: A\ntime_zone: Local\n", []string{`f.yaml:3: time zone "Local": not an IANA zone name`}},
		{"time range", "slug: a\ntitle: A\ntime:\n  from: now\n  to: now-1h\n", []string{`f.yaml:3: time range: from "now" is not always before to "now-1h"`}},
		{"time expression", "slug: a\ntitle: A\ntime:\n  from: yesterday\n  to: now\n",
			[]string{`f.yaml:4: time range: from: time "yesterday": want now, now-<n><unit> (unit s, m, h, d, w, M or y), an RFC 3339 time or epoch milliseconds`}},
		{"duplicate panel slug names both lines", "slug: a\ntitle: A\npanels:\n  - {slug: p, title: P, kind: stat, sql: SELECT 1}\n  - {slug: q, title: Q, kind: stat, sql: SELECT 1}\n  - {slug: p, title: P2, kind: stat, sql: SELECT 2}\n",
			[]string{"f.yaml:6: panels[2].slug: panel p is defined twice, at lines 4 and 6"}},
		{"empty and blank", "slug: a\ntitle: ' '\npanels:\n  - {slug: p, title: '', kind: stat, sql: \"  \"}\n",
			[]string{"f.yaml:2: title: must not be blank", "f.yaml:4: panels[0].title: must not be empty", "f.yaml:4: panels[0].sql: must not be blank"}},
		{"sql size in bytes", "slug: a\ntitle: A\npanels:\n  - slug: p\n    title: P\n    kind: stat\n    sql: SELECT '" + strings.Repeat("é", 32764) + "'\n",
			[]string{"f.yaml:7: panels[0].sql: has 65537 bytes, at most 65536 allowed"}},
		{"too many dependencies", "slug: a\ntitle: A\npanels:\n  - slug: p\n    title: P\n    kind: stat\n    sql: SELECT 1\n    depends_on: [" + strings.Repeat("t, ", 64) + "t]\n",
			[]string{"f.yaml:8: panels[0].depends_on: 65 entries, at most 64 allowed"}},
		{"variables", "slug: a\ntitle: A\nvariables:\n  - {name: r, kind: query}\n  - {name: s, kind: list}\n  - {name: t, kind: text, options: [x]}\n  - {name: u, kind: pick}\n" +
			"  - name: v\n    kind: query\n    sql: SELECT :w\n  - {name: w, kind: list, options: [a, b], default: [c]}\n  - {name: w, kind: text}\n  - {name: Bad, kind: text}\n",
			[]string{"f.yaml:4: variable r: a query variable needs sql", "f.yaml:5: variable s: a list variable needs options",
				"f.yaml:6: variable t: a text variable takes neither sql nor options", `f.yaml:7: variables[3].kind: "pick" is not one of query, list, text`,
				"f.yaml:10: variable v: sql uses :w, but variable w is declared after v",
				`f.yaml:11: variable w: default "c" is not one of its options`,
				"f.yaml:12: variable w is declared twice",
				"f.yaml:13: variable \"Bad\": the name must match ^[a-z_][a-z0-9_]{0,62}$"}},
		{"placeholders", "slug: a\ntitle: A\npanels:\n  - {slug: p, title: P, kind: stat, sql: 'SELECT $1'}\n  - {slug: q, title: Q, kind: stat, sql: 'SELECT :from'}\n  - {slug: r, title: R, kind: stat, sql: \"SELECT 'x\"}\n",
			[]string{"f.yaml:4: panel p: sql: positional parameter $1 at byte 7: refer to variables by name (:name)",
				"f.yaml:5: panel q: sql uses :from, but the dashboard has no time range",
				"f.yaml:6: panel r: sql: unterminated string constant at byte 7"}},
		{"thresholds and columns", "slug: a\ntitle: A\npanels:\n  - slug: p\n    title: P\n    kind: table\n    sql: SELECT 1\n    options:\n      thresholds: {steps: [{value: 10, color: red}, {value: 5, color: pink}]}\n      columns:\n        - {name: n, align: middle}\n        - {name: n}\n",
			[]string{`f.yaml:9: panels[0].options.thresholds.steps[1].color: "pink" is not one of green, blue, yellow, orange, red, purple, grey`,
				"f.yaml:9: panels[0].options.thresholds.steps[1].value: 5 must be above the step before it (10): steps go in ascending order",
				`f.yaml:11: panels[0].options.columns[0].align: "middle" is not one of left, center, right`,
				`f.yaml:12: panels[0].options.columns[1].name: column "n" is formatted twice`}},
		{"bad gap", "slug: a\ntitle: A\npanels:\n  - slug: p\n    title: P\n    kind: timeseries\n    sql: SELECT 1\n    options: {gap: soon}\n",
			[]string{`f.yaml:8: panels[0].options.gap: "soon" is not a duration such as 10m, 1h30m or 2d, a positive number, nor none`}},
		{"empty file", "# nothing\n", []string{"f.yaml: empty file: want a dashboard (slug, title, panels)"}},
		{"not a mapping", "- a\n", []string{"f.yaml:1: want a mapping with slug, title and panels, got a list"}},
		{"two documents", "slug: a\ntitle: A\n---\nslug: b\ntitle: B\n", []string{"f.yaml:3: a second YAML document: one dashboard per file"}},
		{"merge key", "slug: a\ntitle: A\npanels:\n  - &p {slug: p, title: P, kind: stat, sql: SELECT 1}\n  - <<: *p\n    slug: q\n",
			[]string{"f.yaml:5: panels[1].<<: merge keys (<<) are not supported; write the keys out",
				"f.yaml:5: panels[1]: missing key title", "f.yaml:5: panels[1]: missing key kind", "f.yaml:5: panels[1]: missing key sql"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.yaml))
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Parse: got %v, want Problems", err)
			}
			var got []string
			for _, p := range probs {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestParseAliases: anchors and aliases are YAML, and work.
func TestParseAliases(t *testing.T) {
	doc, err := Parse("f.yaml", []byte("slug: a\ntitle: &t Sales\npanels:\n  - {slug: p, title: *t, kind: stat, sql: SELECT 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := doc.Dashboard.Panels[0].Title; got != "Sales" {
		t.Errorf("title through an alias: got %q, want Sales", got)
	}
}

// TestMarshalRoundTrip: what Marshal writes parses back to the same
// dashboard, and writing that again gives the same bytes, for values that
// need quoting or cannot be literal blocks.
func TestMarshalRoundTrip(t *testing.T) {
	three := 3
	d := &panel.Dashboard{
		Slug: "odd", Title: "2024", Description: "line one\nline two: with a colon\n", Public: false,
		TimeZone: "America/Argentina/Buenos_Aires", Refresh: 90 * time.Minute, MaxRefreshHz: 0.5, Position: -3,
		Time: &panel.TimeRange{From: "now-7d", To: "now"},
		Variables: []panel.Variable{
			{Name: "v", Label: "yes", Kind: panel.ListVariable, Options: []string{"true", "1", "a, b", "[x]", "#c"}, Multi: true, Default: []string{"1"}},
			{Name: "w", Kind: panel.TextVariable},
		},
		Panels: []*panel.Def{
			{Slug: "p", Title: "null", Kind: panel.Stat, SQL: "SELECT 1 \nFROM t -- trailing space above\n", Width: 4, Height: 4,
				Options: panel.Options{Unit: "%", Prefix: "€ ", Decimals: &three, Sparkline: true, Delta: true, Limit: 7, Stacked: true}},
			{Slug: "q", Title: "'quoted' \"both\"", Kind: panel.Feed, SQL: "SELECT 'tab\there'", Position: 1, Width: 1, Height: 2,
				DependsOn: []string{`"Sales Data"."Q1"`, "public.orders"}},
			{Slug: "r", Title: "R", Kind: panel.Bar, SQL: "\n\nSELECT 1\n\n\n", Position: 2, Width: 1, Height: 1},
		},
	}
	b, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Parse("odd.yaml", b)
	if err != nil {
		t.Fatalf("parsing what Marshal wrote:\n%s\n%v", b, err)
	}
	got := doc.Dashboard
	got.Source = nil
	if !reflect.DeepEqual(got, d) {
		t.Errorf("round trip:\n got %+v\nwant %+v\nfile:\n%s", got, d, b)
	}
	again, err := Marshal(got)
	if err != nil || !bytes.Equal(again, b) {
		t.Errorf("Marshal of the parsed dashboard differs:\n%s\nwant\n%s", again, b)
	}
	if !strings.Contains(string(b), "    sql: |\n      \n      \n      SELECT 1\n") && !strings.Contains(string(b), "sql: |+") {
		t.Logf("file:\n%s", b)
	}
}

func TestExportBytesStartsWithSchemaComment(t *testing.T) {
	b, err := ExportBytes(&panel.Dashboard{Slug: "a", Title: "A", Public: true, TimeZone: "UTC"})
	if err != nil {
		t.Fatal(err)
	}
	want := "# yaml-language-server: $schema=dashboard.schema.json\nslug: a\ntitle: A\nvisibility: public\n"
	if string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second: "1s", 90 * time.Second: "1m30s", time.Minute: "1m", time.Hour: "1h",
		90 * time.Minute: "1h30m", 24 * time.Hour: "24h", time.Hour + time.Second: "1h1s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%s): got %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(want); err != nil || back != d || !pattern(refreshPattern).MatchString(want) {
			t.Errorf("%q does not read back as %s", want, d)
		}
	}
}

// writeFiles writes files into dir, creating folders as needed.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		// Replaced whole, as an editor or a ConfigMap does: a Watcher
		// polling the folder must never read a file half written.
		if err := writeAtomic(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"b.yaml":             "slug: b\ntitle: B\n",
		"team/a.yml":         "# a comment\nslug: a\ntitle: A\n",
		"notes.txt":          "not a dashboard",
		".hidden.yaml":       "not: parsed",
		".git/x.yaml":        "not: parsed",
		"..data/c.yaml":      "slug: c\ntitle: C\n",
		"schema.json":        "{}",
		"team/README.md":     "# team",
		"team/deep/dd.YAML":  "slug: dd\ntitle: DD\n",
		"linked-target.txt1": "slug: l\ntitle: L\n",
	})
	if err := os.Symlink(filepath.Join(dir, "linked-target.txt1"), filepath.Join(dir, "linked.yaml")); err != nil {
		t.Fatal(err)
	}
	set, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	var files, slugs []string
	for _, d := range set.Docs {
		files = append(files, d.File)
		slugs = append(slugs, d.Dashboard.Slug)
		if d.Dashboard.Source == nil || d.Dashboard.Source.File != d.File {
			t.Errorf("%s: Source %+v, want its file", d.File, d.Dashboard.Source)
		}
	}
	if want := []string{"b.yaml", "linked.yaml", "team/a.yml", "team/deep/dd.YAML"}; !slices.Equal(files, want) {
		t.Errorf("files: got %q, want %q", files, want)
	}
	if set.Doc("dd") == nil || set.Doc("nosuch") != nil {
		t.Errorf("Doc lookups wrong: %q", slugs)
	}

	// The hash changes with a file's bytes and name, not with its time.
	h := set.Hash
	now := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(dir, "b.yaml"), now, now)
	if again, _ := LoadDir(dir); again.Hash != h {
		t.Errorf("the hash changed with a file's time only")
	}
	writeFiles(t, dir, map[string]string{"b.yaml": "slug: b\ntitle: B2\n"})
	if again, _ := LoadDir(dir); again.Hash == h {
		t.Errorf("the hash did not change with a file's content")
	}

	// The same slug in two files: both named; every file's problems at once.
	writeFiles(t, dir, map[string]string{"team/z.yaml": "title: Z\nslug: b\n", "broken.yaml": "slug: [\n"})
	_, err = LoadDir(dir)
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("LoadDir with problems: got %v", err)
	}
	want := []string{"broken.yaml:1: did not find expected node content", "team/z.yaml:2: slug: dashboard b is also defined in b.yaml:1"}
	if got := strings.Split(probs.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}

	if _, err := LoadDir(filepath.Join(dir, "nosuch")); err == nil || errors.As(err, &probs) {
		t.Errorf("LoadDir of a missing folder: got %v, want an error that is not Problems", err)
	}
	if _, err := LoadDir(filepath.Join(dir, "b.yaml")); err == nil || !strings.Contains(err.Error(), "is not a folder") {
		t.Errorf("LoadDir of a file: got %v, want 'is not a folder'", err)
	}
}

func TestLineDiff(t *testing.T) {
	got := lineDiff("SELECT a\nFROM t\nWHERE x", "SELECT a, b\nFROM t\nWHERE x\nLIMIT 5")
	want := []string{"- SELECT a", "+ SELECT a, b", "  FROM t", "  WHERE x", "+ LIMIT 5"}
	if !slices.Equal(got, want) {
		t.Errorf("lineDiff: got %q, want %q", got, want)
	}
}

// TestSchemaFileIsCurrent: docs/dashboard.schema.json is what Schema
// makes from the code, so the two cannot drift apart. After a change to
// the file types: go run ./cmd/dashboard schema > docs/dashboard.schema.json
func TestSchemaFileIsCurrent(t *testing.T) {
	want, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/dashboard.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/dashboard.schema.json is not what the code makes; run: go run ./cmd/dashboard schema > docs/dashboard.schema.json")
	}
}

// TestSchemaRules: the enums of the file types are the vocabulary's, and
// every key of every type is in the schema.
func TestSchemaRules(t *testing.T) {
	kind, _ := reflect.TypeOf(Panel{}).FieldByName("Kind")
	var kinds []string
	for _, k := range panel.Kinds {
		kinds = append(kinds, string(k))
	}
	if got := strings.Split(kind.Tag.Get("enum"), ","); !slices.Equal(got, kinds) {
		t.Errorf("Panel.Kind enum: got %q, want panel.Kinds %q", got, kinds)
	}
	vkind, _ := reflect.TypeOf(Variable{}).FieldByName("Kind")
	if got, want := vkind.Tag.Get("enum"), strings.Join([]string{string(panel.QueryVariable), string(panel.ListVariable), string(panel.TextVariable)}, ","); got != want {
		t.Errorf("Variable.Kind enum: got %q, want %q", got, want)
	}
	b, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []reflect.Type{reflect.TypeOf(File{}), reflect.TypeOf(Panel{}), reflect.TypeOf(Variable{}), reflect.TypeOf(Grid{}), reflect.TypeOf(TimeRange{}), reflect.TypeOf(panel.Options{})} {
		for _, f := range fieldsOf(typ) {
			if !bytes.Contains(b, []byte(`"`+f.name+`": {`)) {
				t.Errorf("the schema lacks %s.%s", typ.Name(), f.name)
			}
			if f.sf.Tag.Get("desc") == "" {
				t.Errorf("%s.%s has no desc tag, so no description in the schema", typ.Name(), f.name)
			}
		}
	}
	for pat := range patternWords {
		if _, ok := patternWords[pat]; !ok {
			t.Errorf("pattern %s has no words", pat)
		}
	}
}
