package web

import (
	"bytes"
	"encoding/csv"
	"slices"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

func TestWriteCSV(t *testing.T) {
	txt := func(s string) panel.Value { return panel.Value{Kind: panel.Text, Text: s} }
	num := func(s string) panel.Value { return panel.Value{Kind: panel.Number, Text: s} }
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	res := &panel.Result{
		Columns: []string{"=name", "n", "at"},
		Rows: [][]panel.Value{
			{txt("=1+1"), num("-5"), {Kind: panel.Time, Text: at.Format(time.RFC3339Nano), Time: at}},
			{txt("+x"), num("1e+06"), {Kind: panel.Null}},
			{txt("-x"), num("-Infinity"), {Kind: panel.Bool, Text: "true", Num: 1}},
			{txt("@x"), {Kind: panel.Null}, txt("\tx")},
			{txt("\rx"), num("0"), txt(`a "quoted", comma` + "\nand a line")},
			{txt("'already"), num("3.5"), txt("x=1")},
		},
	}
	var buf bytes.Buffer
	writeCSV(&buf, res)
	got, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("reading back: %v", err)
	}
	want := [][]string{
		{"'=name", "n", "at"},
		{"'=1+1", "-5", "2024-05-06T07:08:09Z"},
		{"'+x", "1e+06", ""},
		{"'-x", "-Infinity", "true"},
		{"'@x", "", "'\tx"},
		// encoding/csv with CRLF line ends writes a line break in a cell as
		// CRLF and drops a lone CR; the apostrophe stays.
		{"'x", "0", `a "quoted", comma` + "\nand a line"},
		{"'already", "3.5", "x=1"},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("got %q, want %q", got, want)
	}
	buf.Reset()
	writeCSV(&buf, &panel.Result{Columns: []string{"a", "b"}, Rows: [][]panel.Value{{txt("1"), txt("2")}}})
	if got := buf.String(); got != "a,b\r\n1,2\r\n" {
		t.Errorf("got %q, want CRLF line ends", got)
	}
}
