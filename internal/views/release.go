package views

import (
	"crypto/sha256"
	"embed"
	"io/fs"
	"strings"
)

// sources are the package's own files, embedded only to be hashed: a
// changed template, or changed Go code that formats what the templates
// show (numbers, times, chart geometry), may change the fragments a page
// receives. The generated *_templ.go follow the .templ files, so hashing
// them too changes nothing; the tests are embedded by the pattern but
// left out of the digest.
//
//go:embed *.templ *.go
var sources embed.FS

// TemplateDigest is a SHA-256 over the names and contents of the
// package's .templ and non-test .go sources, in order. It is part of the
// release identity (web.Release), so that pages drawn by one markup reload
// once when they meet a server that draws another.
func TemplateDigest() [sha256.Size]byte {
	h := sha256.New()
	// WalkDir visits in lexical order, so the digest is deterministic.
	err := fs.WalkDir(sources, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !inDigest(name) {
			return err
		}
		b, err := sources.ReadFile(name)
		if err != nil {
			return err
		}
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(b)
		h.Write([]byte{0})
		return nil
	})
	if err != nil {
		panic("views: reading embedded sources: " + err.Error())
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// inDigest reports whether an embedded file is part of TemplateDigest.
func inDigest(name string) bool {
	return strings.HasSuffix(name, ".templ") ||
		strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")
}
