package views

import (
	"crypto/sha256"
	"embed"
	"io/fs"
)

// templates are the sources of every component, embedded only to be
// hashed: a changed template may change the fragments a page receives.
//
//go:embed *.templ
var templates embed.FS

// TemplateDigest is a SHA-256 over the names and contents of the .templ
// sources, in order. It is part of the release identity (web.Release), so
// that pages drawn by one markup reload once when they meet a server that
// draws another.
func TemplateDigest() [sha256.Size]byte {
	h := sha256.New()
	// WalkDir visits in lexical order, so the digest is deterministic.
	err := fs.WalkDir(templates, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := templates.ReadFile(name)
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
		panic("views: reading embedded templates: " + err.Error())
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}
