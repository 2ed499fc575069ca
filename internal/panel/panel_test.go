package panel

import "testing"

func TestOptionsEqual(t *testing.T) {
	two, alsoTwo, three := 2, 2, 3
	tests := []struct {
		a, b Options
		want bool
	}{
		{Options{}, Options{}, true},
		{Options{Decimals: &two}, Options{Decimals: &alsoTwo}, true},
		{Options{Decimals: &two}, Options{Decimals: &three}, false},
		{Options{Decimals: &two}, Options{}, false},
		{Options{Unit: "ms"}, Options{Unit: "s"}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Equal(tt.b); got != tt.want {
			t.Errorf("%+v.Equal(%+v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestResultHash(t *testing.T) {
	a := &Result{Columns: []string{"n"}, Rows: [][]Value{{{Kind: Number, Num: 1, Text: "1"}}}}
	b := &Result{Columns: []string{"n"}, Rows: [][]Value{{{Kind: Number, Num: 1, Text: "1"}}}}
	c := &Result{Columns: []string{"n"}, Rows: [][]Value{{{Kind: Number, Num: 2, Text: "2"}}}}
	if a.Hash() != b.Hash() {
		t.Errorf("equal rows: hashes differ, want equal")
	}
	if a.Hash() == c.Hash() {
		t.Errorf("different rows: hashes equal, want different")
	}
}
