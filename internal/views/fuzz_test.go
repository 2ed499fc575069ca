package views

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/livedash/dashboard/internal/panel"
)

// FuzzPanel renders every kind with arbitrary text in titles, column names,
// cells, errors and notices, and checks that the output parses as HTML and
// holds no element or attribute the views did not write.
func FuzzPanel(f *testing.F) {
	for _, h := range hostile {
		f.Add(h, h, 1.5)
	}
	f.Add("plain", "", -2.0)
	f.Add("<svg><script>x</script></svg>", "<![CDATA[</svg>]]>", 1e300)
	f.Add("\x00<scr\x00ipt>", "&lt;script&gt;", 0.0)
	f.Add("big", "x", 1.7e308)
	f.Add("tiny", "x", 5e-324)
	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, a, b string, n float64) {
	for _, k := range panel.Kinds {
		d := def(k, panel.Options{Prefix: a, Unit: b, Delta: true, Sparkline: true})
		d.Title = a
		r := &panel.Result{
			Columns: []string{a, b, a},
			Rows: [][]panel.Value{
				{tm(t0), txt(a), num(n)},
				{txt(b), txt(b), {Kind: panel.Bool, Text: a}},
				{num(n), txt(a), num(-n)},
				{tm(t0.Add(time.Hour)), null(), num(n * 2)},
			},
			Notice: b,
		}
		for _, r := range []*panel.Result{r, {Err: a, Notice: b}} {
			checkFuzzOutput(t, render(t, d, r))
		}
	}
}

func checkFuzzOutput(t *testing.T, out string) {
	t.Helper()
	z := html.NewTokenizer(strings.NewReader(out))
	depth := 0
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if err := z.Err(); err.Error() != "EOF" {
				t.Fatalf("tokenizing: %v", err)
			}
			break
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			if !allowedTags[tok.Data] {
				t.Fatalf("unexpected <%s> in %q", tok.Data, out)
			}
			for _, a := range tok.Attr {
				if !allowedAttrs[a.Key] {
					t.Fatalf("unexpected attribute %s on <%s> in %q", a.Key, tok.Data, out)
				}
				if geometryAttrs[a.Key] && strings.ContainsAny(a.Val, "NIaf+e") {
					t.Fatalf("bad geometry %s=%q on <%s>", a.Key, a.Val, tok.Data)
				}
			}
			if tt == html.StartTagToken && !voidTags[tok.Data] {
				depth++
			}
		case html.EndTagToken:
			if !allowedTags[tok.Data] {
				t.Fatalf("unexpected </%s> in %q", tok.Data, out)
			}
			depth--
		case html.CommentToken, html.DoctypeToken:
			t.Fatalf("unexpected %v in %q", tt, out)
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced tags (%d) in %q", depth, out)
	}
	if _, err := html.Parse(strings.NewReader(out)); err != nil {
		t.Fatalf("parsing: %v", err)
	}
}

func set(s ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range s {
		m[k] = true
	}
	return m
}

// The only tags and attributes a panel may contain: what the templates
// write. A <script>, <img> or on* attribute can only come from data.
var (
	allowedTags = set("section", "header", "h2", "div", "p", "strong", "footer", "svg", "polyline", "circle", "path",
		"table", "thead", "tbody", "tr", "th", "td", "time", "g", "line", "text", "rect", "title", "ul", "li", "i",
		"ol", "span", "a")
	voidTags      = set()
	geometryAttrs = set("points", "d", "cx", "cy", "x1", "x2", "y1", "y2", "x", "y", "width", "height", "viewbox")
	allowedAttrs  = set("id", "class", "style", "aria-labelledby", "role", "viewbox", "preserveaspectratio",
		"aria-hidden", "points", "d", "cx", "cy", "r", "scope", "datetime", "aria-label", "x1", "x2", "y1", "y2", "x", "y",
		"width", "height", "title", "href", "data-hover", "textlength", "lengthadjust", "tabindex")
)
