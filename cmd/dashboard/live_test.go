package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/pgtest"
)

// This file tests what keeps open screens honest against the real program:
// the resume contract across servers, a deleted dashboard, a renamed one,
// and a long-poll whose token is revoked while it waits.

// TestResumeAcrossServers runs two servers on one database. The same state
// must have the same version on both, so a client that moves from one to
// the other on a reconnect is current there, and the next write reaches it
// as a step of one panel, not as the whole page and never as silence.
func TestResumeAcrossServers(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	s1 := newContractFixture(t, configFor(url))
	s2 := startServer(t, configFor(url), false)
	awaitDashboard(t, s2, "ops", "t")

	// A client on s2 follows a write.
	c := openSSE(t, nil, s2.URL+"/d/ops/events")
	c.hello(t)
	wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
	insertRow(t, s1.testServer)
	v := wantUpdate(t, c.nextUpdate(t), "#panel-p1")
	c.close()
	// Other work moves the database on (its WAL position, its clock)
	// before s1, which nobody watched so far, queries the same data.
	s1.exec(t, "CREATE TABLE unrelated (x int); INSERT INTO unrelated VALUES (1)")

	// s1 shows the same state under the same version.
	eventually(t, "s1 to show the state s2 sent", func() bool {
		return currentVersion(t, s1.testServer, "ops") == v
	})

	// The client moves to s1, both ways of naming its version.
	for i, open := range []func(v hub.Version) *sseClient{
		func(v hub.Version) *sseClient {
			return openSSE(t, nil, s1.URL+"/d/ops/events", "Last-Event-ID", v.String())
		},
		func(v hub.Version) *sseClient { return openSSE(t, nil, s1.URL+"/d/ops/events?lastEventId="+v.String()) },
	} {
		c := open(v)
		c.hello(t)
		insertRow(t, s2)
		m := c.nextUpdate(t)
		v = wantUpdate(t, m, "#panel-p1")
		if got, want := statValue(m.body()), strconv.Itoa(i+2); got != want {
			t.Errorf("s1 shows %q rows, want %s", got, want)
		}
		c.close()
	}
	// Both servers agree on the last state too.
	eventually(t, "s2 to show the state s1 sent", func() bool {
		return currentVersion(t, s2, "ops") == v
	})
}

// TestDeletedDashboardGone: deleting a dashboard tells its open pages so,
// explicitly: the stream sends a named "gone" event and ends, a waiting
// long-poll answers 410, and new requests answer 404 (which clients retry
// slowly, since a revoked token and a catalog not yet loaded look the same).
func TestDeletedDashboardGone(t *testing.T) {
	t.Parallel()
	s := newContractFixture(t, testConfig(t))
	cur := currentVersion(t, s.testServer, "ops")
	c := openSSE(t, nil, s.URL+"/d/ops/events", "Last-Event-ID", cur.String())
	c.hello(t)
	waiting := pollInBackground(s.testServer, "ops", cur, 20)
	// A long-poll that arrives after the delete gets 404; this one must be
	// waiting already.
	eventually(t, "the long-poll to wait", func() bool { return promValue(t, s.testServer, "dashboard_longpoll_waiting") == 1 })

	s.exec(t, "DELETE FROM dashboard.dashboards WHERE slug = 'ops'")

	for {
		m, err := c.nextWithin(contractWait)
		if err != nil {
			t.Fatalf("waiting for the gone event: %v", err)
		}
		if m.hasID {
			t.Fatalf("got update %s after the dashboard was deleted, want the gone event", m.id)
		}
		if m.event == "gone" {
			break
		}
	}
	if _, err := c.line(contractWait); !errors.Is(err, io.EOF) {
		t.Errorf("after the gone event: got %v, want the stream ended", err)
	}
	select {
	case got := <-waiting:
		if got != http.StatusGone {
			t.Errorf("waiting long-poll: got %d, want 410", got)
		}
	case <-time.After(contractWait):
		t.Fatal("waiting long-poll: no answer after the dashboard was deleted")
	}
	for _, p := range []string{"/d/ops", "/d/ops/events", "/d/ops/poll"} {
		if got := s.status(t, "GET", p); got != http.StatusNotFound {
			t.Errorf("GET %s after the delete: got %d, want 404", p, got)
		}
	}
}

// TestRenameReachesOpenPages: the title and description are a live part of
// the page, so an edit reaches open streams and long-polls.
func TestRenameReachesOpenPages(t *testing.T) {
	t.Parallel()
	s := newContractFixture(t, testConfig(t))
	cur := currentVersion(t, s.testServer, "ops")
	c := openSSE(t, nil, s.URL+"/d/ops/events", "Last-Event-ID", cur.String())
	c.hello(t)

	s.exec(t, "UPDATE dashboard.dashboards SET title = 'Operations <live>', description = 'Orders & more' WHERE slug = 'ops'")

	m := c.nextUpdate(t)
	v := wantUpdate(t, m, "#heading", "#grid")
	body := m.body()
	if !strings.Contains(body, "<h1>Operations &lt;live&gt;</h1>") || !strings.Contains(body, "Orders &amp; more") {
		t.Errorf("got update %q, want the new title and description, escaped", trim(body))
	}
	resp, pollBody := s.get(t, "/d/ops/poll?wait=0", "If-None-Match", `"`+cur.String()+`"`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(pollBody, "Operations &lt;live&gt;") {
		t.Errorf("long-poll from before the rename: got %d %q, want 200 with the new title", resp.StatusCode, trim(pollBody))
	}
	if got, _ := hub.ParseVersion(strings.Trim(resp.Header.Get("ETag"), `"`)); got != v {
		t.Errorf("long-poll ETag: got %s, want the stream's version %s", got, v)
	}
	_, page := s.get(t, "/d/ops")
	if !strings.Contains(page, "<title>Operations &lt;live&gt;</title>") {
		t.Errorf("page after the rename: want the new title in <title>")
	}
}

// TestLongPollRevokedWhileWaiting: a long-poll that is waiting when its
// token is revoked must not answer with data committed after the
// revocation; it answers 404, as a request with a bad token would.
func TestLongPollRevokedWhileWaiting(t *testing.T) {
	t.Parallel()
	s := newSecurityFixture(t, testConfig(t))
	secret, id := s.token(t, "secret")
	cur := currentVersion(t, s.testServer, "secret", cookie(secret)...)

	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.URL+"/d/secret/poll?wait=30", nil)
		req.Header.Set("If-None-Match", `"`+cur.String()+`"`)
		req.Header.Set("Cookie", "dashboard_token="+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	// The poll is waiting once the gauge counts it.
	eventually(t, "the long-poll to wait", func() bool { return promValue(t, s.testServer, "dashboard_longpoll_waiting") == 1 })

	if err := access.Revoke(context.Background(), s.pool, id); err != nil {
		t.Fatal(err)
	}
	s.exec(t, `INSERT INTO t (v) VALUES ('after revocation')`)
	select {
	case got := <-status:
		if got != http.StatusNotFound {
			t.Errorf("long-poll waiting when its token was revoked: got %d, want 404", got)
		}
	case <-time.After(contractWait + 30*time.Second):
		t.Fatal("long-poll: no answer")
	}
}
