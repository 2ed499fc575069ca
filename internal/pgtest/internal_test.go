package pgtest

import (
	"strings"
	"testing"
)

func TestDBName(t *testing.T) {
	got := dbName(12345, 7, "TestThing/Sub_Case-2"+strings.Repeat("x", 100))
	if !strings.HasPrefix(got, "t12345_7_testthing_sub_case_2x") {
		t.Errorf("got %s, want prefix t12345_7_testthing_sub_case_2x", got)
	}
	if len(got) > 63 {
		t.Errorf("got %d bytes, want at most 63", len(got))
	}
}

func TestWithDB(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"postgres://u:p@h:5432/old?sslmode=disable", "postgres://u:p@h:5432/t1?sslmode=disable"},
		{"postgresql://h", "postgresql://h/t1"},
		{"host=/tmp port=5432 dbname=old", "host=/tmp port=5432 dbname=old dbname=t1"},
	} {
		if got := withDB(tt.in, "t1"); got != tt.want {
			t.Errorf("withDB(%q): got %s, want %s", tt.in, got, tt.want)
		}
	}
}
