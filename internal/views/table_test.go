package views

import (
	"math"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/livedash/dashboard/internal/panel"
)

// tableCells renders a table panel and returns, for each body row, each
// cell's text and class list, and the header's classes.
func tableCells(t *testing.T, o panel.Options, r *panel.Result) (rows [][]string, classes [][]string, head []string) {
	t.Helper()
	out := render(t, def(panel.Table, o), r)
	nodes := parseFragment(t, out)
	for _, th := range find(nodes, "th", "") {
		c, _ := attr(th, "class")
		head = append(head, c)
	}
	for _, tr := range find(find(nodes, "tbody", ""), "tr", "") {
		var texts, cls []string
		for _, td := range find([]*html.Node{tr}, "td", "") {
			texts = append(texts, text(td))
			c, _ := attr(td, "class")
			cls = append(cls, c)
		}
		rows, classes = append(rows, texts), append(classes, cls)
	}
	return rows, classes, head
}

// TestTableColumnFormats: each column is formatted on its own. Whole
// numbers never get decimals from the panel-wide option (an id stays 17,
// not 17.00); a column with fractions gets it; options.columns sets unit,
// prefix, decimals (even on whole numbers, because the operator asked for
// that column) and alignment; without any decimals a column's numbers all
// get the decimals its most precise value needs, up to two. NaN and
// infinities do not make a column of whole numbers one of fractions.
func TestTableColumnFormats(t *testing.T) {
	t.Parallel()
	one, two, zero := 1, 2, 0
	r := &panel.Result{
		Columns: []string{"id", "price", "ratio", "name", "cents"},
		Rows: [][]panel.Value{
			{num(17), num(12.5), num(0.26), txt("alpha"), num(1200)},
			{num(1234), num(3), num(0.004), txt("beta"), num(5)},
			{num(-2), null(), num(1), txt("gamma"), num(70)},
			{{Kind: panel.Number, Num: math.Inf(1), Text: "Infinity"}, num(1), num(1), txt("delta"), {Kind: panel.Number, Num: math.NaN(), Text: "NaN"}},
		},
	}
	tests := []struct {
		name string
		o    panel.Options
		want [][]string
	}{
		{"automatic: whole numbers bare, fractions to the column's precision",
			panel.Options{},
			[][]string{
				{"17", "12.5", "0.26", "alpha", "1,200"},
				{"1,234", "3.0", "0.004", "beta", "5"},
				{"-2", "", "1.00", "gamma", "70"},
				{"∞", "1.0", "1.00", "delta", "NaN"},
			}},
		{"panel-wide decimals skip integer columns",
			panel.Options{Decimals: &one},
			[][]string{
				{"17", "12.5", "0.3", "alpha", "1,200"},
				{"1,234", "3.0", "0.0", "beta", "5"},
				{"-2", "", "1.0", "gamma", "70"},
				{"∞", "1.0", "1.0", "delta", "NaN"},
			}},
		{"columns set unit, prefix and decimals",
			panel.Options{Decimals: &one, Columns: []panel.Column{
				{Name: "price", Prefix: "$", Decimals: &two},
				{Name: "ratio", Unit: "%", Decimals: &zero},
				{Name: "cents", Unit: " ¢", Decimals: &two},
				{Name: "not in the result", Prefix: "?"},
			}},
			[][]string{
				{"17", "$12.50", "0%", "alpha", "1,200.00 ¢"},
				{"1,234", "$3.00", "0%", "beta", "5.00 ¢"},
				{"-2", "", "1%", "gamma", "70.00 ¢"},
				{"∞", "$1.00", "1%", "delta", "NaN ¢"},
			}},
		{"a column's format without decimals keeps automatic ones",
			panel.Options{Columns: []panel.Column{{Name: "id", Prefix: "#"}, {Name: "price", Unit: " EUR"}}},
			[][]string{
				{"#17", "12.5 EUR", "0.26", "alpha", "1,200"},
				{"#1,234", "3.0 EUR", "0.004", "beta", "5"},
				{"-#2", "", "1.00", "gamma", "70"},
				{"#∞", "1.0 EUR", "1.00", "delta", "NaN"},
			}},
	}
	for _, tt := range tests {
		got, _, _ := tableCells(t, tt.o, r)
		if len(got) != len(tt.want) {
			t.Fatalf("%s: got %d rows, want %d", tt.name, len(got), len(tt.want))
		}
		for i := range got {
			if strings.Join(got[i], "|") != strings.Join(tt.want[i], "|") {
				t.Errorf("%s, row %d: got %q, want %q", tt.name, i, got[i], tt.want[i])
			}
		}
	}
}

// TestTableAlignment: numbers and the headers of number columns align
// right, the rest left; a column's align option overrides both, on its
// header and its cells.
func TestTableAlignment(t *testing.T) {
	t.Parallel()
	r := &panel.Result{
		Columns: []string{"id", "name", "amount", "mixed"},
		Rows:    [][]panel.Value{{num(1), txt("a"), num(2.5), num(3)}, {num(2), txt("b"), num(1), txt("x")}},
	}
	tests := []struct {
		name  string
		cols  []panel.Column
		head  []string
		cells []string // classes of the first row
	}{
		{"automatic", nil,
			[]string{"num", "", "num", ""},
			[]string{"num", "", "num", "num"}},
		{"overridden", []panel.Column{{Name: "id", Align: "center"}, {Name: "name", Align: "right"}, {Name: "amount", Align: "left"}, {Name: "mixed", Align: "sideways"}},
			[]string{"num align-center", "align-right", "num align-left", ""},
			[]string{"num align-center", "align-right", "num align-left", "num"}},
	}
	for _, tt := range tests {
		_, classes, head := tableCells(t, panel.Options{Columns: tt.cols}, r)
		if strings.Join(head, "|") != strings.Join(tt.head, "|") {
			t.Errorf("%s: header classes %q, want %q", tt.name, head, tt.head)
		}
		if strings.Join(classes[0], "|") != strings.Join(tt.cells, "|") {
			t.Errorf("%s: cell classes %q, want %q", tt.name, classes[0], tt.cells)
		}
	}
}

// TestTableThresholds: a number cell of a column with thresholds takes the
// class of the step it reaches; a cell that reached a step says so in
// words before the value (its label, or ≥ and the step's value with the
// column's prefix), so that the numbers stay aligned; cells below every step, text, NULLs and columns
// without thresholds get neither.
func TestTableThresholds(t *testing.T) {
	t.Parallel()
	two := 2
	r := &panel.Result{
		Columns: []string{"host", "load", "amount"},
		Rows: [][]panel.Value{
			{txt("a"), num(10), num(5)},
			{txt("b"), num(85), num(150)},
			{txt("c"), num(99), null()},
		},
	}
	o := panel.Options{Columns: []panel.Column{
		{Name: "load", Unit: "%", Thresholds: &panel.Thresholds{Base: "green", Steps: []panel.Step{
			{Value: 80, Color: "orange"}, {Value: 95, Color: "red", Label: "high"},
		}}},
		{Name: "amount", Prefix: "$", Decimals: &two, Thresholds: &panel.Thresholds{Steps: []panel.Step{{Value: 100, Color: "purple"}}}},
	}}
	rows, classes, _ := tableCells(t, o, r)
	want := []struct{ text, class string }{
		{"a", ""}, {"10%", "num th-green"}, {"$5.00", "num th-green"},
		{"b", ""}, {"≥ 80%85%", "num th-orange"}, {"≥ $100$150.00", "num th-purple"},
		{"c", ""}, {"high99%", "num th-red"}, {"", "null"},
	}
	for i, w := range want {
		row, col := i/3, i%3
		if rows[row][col] != w.text || classes[row][col] != w.class {
			t.Errorf("row %d, column %d: got %q class %q, want %q class %q", row, col, rows[row][col], classes[row][col], w.text, w.class)
		}
	}
	out := render(t, def(panel.Table, o), r)
	if n := strings.Count(out, `<span class="th-cue">`); n != 3 {
		t.Errorf("got %d cues, want 3 (one per cell that reached a step)", n)
	}
}

// TestTableLongText: text longer than longText characters is marked to
// wrap (never cut); shorter text is not.
func TestTableLongText(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("word ", 13)
	_, classes, _ := tableCells(t, panel.Options{}, &panel.Result{
		Columns: []string{"short", "long"},
		Rows:    [][]panel.Value{{txt("hello"), txt(long)}},
	})
	if classes[0][0] != "" || classes[0][1] != "long" {
		t.Errorf("classes %q, want none for short text and long for %d characters", classes[0], len(long))
	}
}

// TestFeedDecimals: a feed applies the panel's decimals only to numbers
// with a fraction, so an id in an entry stays whole.
func TestFeedDecimals(t *testing.T) {
	t.Parallel()
	two := 2
	r := &panel.Result{Columns: []string{"at", "order", "amount"}, Rows: [][]panel.Value{{tm(t0), num(17), num(12.5)}}}
	nodes := parseFragment(t, render(t, def(panel.Feed, panel.Options{Decimals: &two}), r))
	main, details := find(nodes, "span", "feed-main"), find(nodes, "span", "feed-detail")
	if len(main) != 1 || text(main[0]) != "17" || len(details) != 1 || text(details[0]) != "12.50" {
		t.Errorf("got main %v and details %v, want 17 and 12.50", main, details)
	}
}
