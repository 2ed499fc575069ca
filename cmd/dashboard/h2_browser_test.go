package main

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// TestBrowserTenWindowsOverHTTP2: ten windows of one origin over HTTPS
// hold ten live streams (over HTTP/1.1 a browser stops at six per origin),
// and one insert reaches all ten. Windows, each brought to the front with
// focus, not background tabs, which htmx pauses.
func TestBrowserTenWindowsOverHTTP2(t *testing.T) {
	s, _, _ := startTLS(t, testConfig(t))
	setupCounts(t, s, "wall", 1, "p1")
	browser := newBrowserWith(t, chromedp.Flag("ignore-certificate-errors", true))

	// The protocol of every /events response, as the browser's network
	// stack reports it.
	var mu sync.Mutex
	protocols := map[string]int{}
	const windows = 10
	tabs := make([]context.Context, windows)
	for i := range tabs {
		newWindow := true
		res, err := chromedp.CallBrowser(browser, target.CreateTarget,
			target.CreateTargetParams{URL: "about:blank", NewWindow: &newWindow})
		if err != nil {
			t.Fatalf("opening window %d: %v", i, err)
		}
		ctx, cancel := chromedp.NewContext(browser, chromedp.WithTargetID(res.TargetID))
		t.Cleanup(cancel)
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("attaching to window %d: %v", i, err)
		}
		record(t, ctx)
		err = chromedp.Listen(ctx, func(ev any) {
			if e, ok := ev.(*network.EventResponseReceived); ok && strings.Contains(e.Response.URL, "/events") {
				mu.Lock()
				protocols[e.Response.Protocol]++
				mu.Unlock()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		call(t, ctx, page.BringToFront, cdp.Empty{})
		call(t, ctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
		navigate(t, ctx, s, "/d/wall")
		if state := eval[string](t, ctx, "document.visibilityState"); state != "visible" {
			t.Fatalf("window %d: visibilityState %q, want visible", i, state)
		}
		if !eval[bool](t, ctx, "document.hasFocus()") {
			t.Fatalf("window %d has no focus", i)
		}
		tabs[i] = ctx
	}
	for _, ctx := range tabs {
		waitStatus(t, ctx, "live")
	}
	waitStreams(t, tabs[0], s, windows)
	insert(t, s, "p1")
	for _, ctx := range tabs {
		waitStat(t, ctx, "p1", "2")
	}
	if n := promValue(t, s, "dashboard_sse_clients"); n != windows {
		t.Errorf("got %v open streams after the update, want %d", n, windows)
	}
	mu.Lock()
	defer mu.Unlock()
	if protocols["h2"] < windows || len(protocols) != 1 {
		t.Errorf("protocols of the /events responses: got %v, want h2 for all, at least %d", protocols, windows)
	}
	if got := promLabelled(t, s, `dashboard_sse_streams_opened_total{proto="HTTP/2.0"}`); got < windows {
		t.Errorf("streams the server opened over HTTP/2: got %v, want at least %d", got, windows)
	}
}
