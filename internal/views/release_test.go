package views

import (
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTemplateDigestCoversSources: the digest takes in every .templ and
// every non-test .go file of the package directory, and no test file.
func TestTemplateDigestCoversSources(t *testing.T) {
	var want []string
	for _, pattern := range []string{"*.templ", "*.go"} {
		names, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if filepath.Ext(name) == ".templ" || !isTest(name) {
				want = append(want, name)
			}
		}
	}
	var got []string
	err := fs.WalkDir(sources, ".", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && inDigest(name) {
			got = append(got, name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("hashed %q, want %q", got, want)
	}
	for _, name := range []string{"format.go", "page.templ"} {
		if !slices.Contains(got, name) {
			t.Errorf("%s not in the digest", name)
		}
	}
}

func isTest(name string) bool { return strings.HasSuffix(name, "_test.go") }
