package main

import (
	"bytes"
	"context"
	"flag"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// screenshots is where TestScreenshots writes its PNGs. Empty (the normal
// test run) writes them into a temporary folder, so that the run checks the
// screenshots can be made without rewriting the committed ones. A relative
// folder is taken from the repository's root:
//
//	go test ./cmd/dashboard -run TestScreenshots -screenshots=docs/screenshots
var screenshots = flag.String("screenshots", "", "write the screenshots of docs/screens.md into this folder (relative to the repository's root), e.g. docs/screenshots")

// screenSizes are the sizes the screenshots are taken at, with the address
// suffix of each: the phone and the desktop show the page as it is, the TV
// in kiosk mode with the dark theme.
var screenSizes = []struct {
	viewport
	query string
}{
	{phone, ""},
	{desktop, ""},
	{tv, "?kiosk&theme=dark"},
}

// panelShots are the fixture's panels shot, one of each kind: the kind
// names the file.
var panelShots = []struct{ kind, slug string }{
	{"stat", "revenue"}, {"table", "customers"}, {"timeseries", "latency"}, {"bar", "orders-by-product"}, {"feed", "latest"},
}

// shot is one screenshot: its file name and the size in pixels it must have.
type shot struct {
	name          string
	width, height int
}

// TestScreenshots: the screenshots of docs/screens.md can be made: each
// panel kind (the fixture's panels, whose values are fixed) and each demo
// dashboard, at 390x844, 1600x900 and 3840x2160 (kiosk mode), are written as
// valid, non-empty PNGs of the size shot (a panel's box, the viewport, or
// on the phone the whole page). With -screenshots=DIR they are written into
// DIR (docs/screenshots is what the docs show).
func TestScreenshots(t *testing.T) {
	dir := t.TempDir()
	if *screenshots != "" {
		dir = *screenshots
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(repoRoot(t), dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := startServer(t, testConfig(t), true)
	createFixture(t, s, true)
	ctx := newBrowser(t)
	setColorScheme(t, ctx, "light")

	var shots []shot
	write := func(name string, png []byte, width, height int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		shots = append(shots, shot{name, width, height})
	}
	for _, size := range screenSizes {
		setViewport(t, ctx, size.viewport)
		openPage(t, ctx, s, "/d/"+fixtureSlug+size.query)
		for _, p := range panelShots {
			png, w, h := panelShot(t, ctx, p.slug)
			write("panel-"+p.kind+"-"+size.name+".png", png, w, h)
		}
		for _, slug := range []string{"sales", "ops"} {
			openPage(t, ctx, s, "/d/"+slug+size.query)
			png, w, h := pageShot(t, ctx, size.viewport)
			write("demo-"+slug+"-"+size.name+".png", png, w, h)
		}
	}

	for _, sh := range shots {
		checkPNG(t, filepath.Join(dir, sh.name), sh.width, sh.height)
	}
	if *screenshots != "" {
		t.Logf("wrote %d screenshots into %s", len(shots), dir)
	}
}

// panelShot captures the panel called slug, and returns the PNG with the
// size it must have: the panel's box, in whole pixels.
func panelShot(t *testing.T, ctx context.Context, slug string) ([]byte, int, int) {
	t.Helper()
	box := eval[[]float64](t, ctx, `(() => {
		const p = document.getElementById('panel-`+slug+`');
		if (!p) return [];
		const r = p.getBoundingClientRect();
		return [r.left + scrollX, r.top + scrollY, r.width, r.height];
	})()`)
	if len(box) != 4 {
		t.Fatalf("no panel %s on the page", slug)
	}
	return capture(t, ctx, box[0], box[1], box[2], box[3])
}

// pageShot captures the viewport; on a phone the whole page, which scrolls.
func pageShot(t *testing.T, ctx context.Context, v viewport) ([]byte, int, int) {
	t.Helper()
	height := float64(v.height)
	if v == phone {
		height = eval[float64](t, ctx, `document.documentElement.scrollHeight`)
	}
	return capture(t, ctx, 0, 0, float64(v.width), height)
}

// capture takes the PNG of the page's area at x, y (from the document's
// top left) of width × height CSS pixels, rounded to whole pixels as the
// browser rounds a clip, at a scale of 1.
func capture(t *testing.T, ctx context.Context, x, y, width, height float64) ([]byte, int, int) {
	t.Helper()
	clip := roundClip(x, y, width, height)
	r, err := chromedp.Call(ctx, page.CaptureScreenshot, page.CaptureScreenshotParams{
		Format: page.CaptureScreenshotFormatPng, CaptureBeyondViewport: new(true), FromSurface: new(true), Clip: &clip,
	})
	if err != nil {
		t.Fatalf("capturing a screenshot: %v", err)
	}
	return r.Data, int(clip.Width), int(clip.Height)
}

// roundClip is the clip of the area, with its corners on whole pixels.
func roundClip(x, y, width, height float64) page.Viewport {
	x0, y0 := float64(int(x+0.5)), float64(int(y+0.5))
	return page.Viewport{X: x0, Y: y0, Width: float64(int(x + width + 0.5 - x0)), Height: float64(int(y + height + 0.5 - y0)), Scale: 1}
}

// checkPNG fails the test unless the file is a non-empty PNG that decodes,
// of width × height pixels, not all of one colour.
func checkPNG(t *testing.T, path string, width, height int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		t.Errorf("%s: empty", path)
		return
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Errorf("%s: not a PNG: %v", path, err)
		return
	}
	b := img.Bounds()
	if b != image.Rect(0, 0, width, height) {
		t.Errorf("%s: %dx%d pixels, want %dx%d", path, b.Dx(), b.Dy(), width, height)
	}
	// A blank capture is one colour; a page has text on a background.
	first := img.At(b.Min.X, b.Min.Y)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if img.At(x, y) != first {
				return
			}
		}
	}
	t.Errorf("%s: every pixel has one colour, want a picture", path)
}

// repoRoot is the repository's root: the folder of go.mod above the test's
// working directory (the package's folder).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}
