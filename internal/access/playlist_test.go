package access

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestSetCheckPlaylist: a playlist's grant opens exactly the dashboards
// its playlist's members are, and the playlist; a dashboard's grant never
// opens a playlist; a site-wide one opens every playlist.
func TestSetCheckPlaylist(t *testing.T) {
	now := time.Now()
	forWall, forOne, forAll, expired := NewSecret(), NewSecret(), NewSecret(), NewSecret()
	never := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Set{
		grants: []Grant{
			{ID: 1, Hash: Hash(forWall), PlaylistID: 10, ExpiresAt: never},
			{ID: 2, Hash: Hash(forOne), DashboardID: 1, ExpiresAt: never},
			{ID: 3, Hash: Hash(forAll), ExpiresAt: never},
			{ID: 4, Hash: Hash(expired), PlaylistID: 10, ExpiresAt: now.Add(-time.Second)},
		},
		members: map[int64][]int64{10: {1, 2}, 11: {3}},
	}
	for _, tt := range []struct {
		name   string
		secret string
		dash   int64
		wantID int64 // 0: refused
	}{
		{"playlist token, its first dashboard", forWall, 1, 1},
		{"playlist token, its second dashboard", forWall, 2, 1},
		{"playlist token, another playlist's dashboard", forWall, 3, 0},
		{"playlist token, a dashboard of no playlist", forWall, 4, 0},
		{"playlist token, no dashboard", forWall, 0, 0},
		{"expired playlist token", expired, 1, 0},
	} {
		g, ok := s.Check(tt.secret, tt.dash, now)
		if ok != (tt.wantID != 0) || g.ID != tt.wantID {
			t.Errorf("Check %s: got grant %d %v, want %d", tt.name, g.ID, ok, tt.wantID)
		}
	}
	for _, tt := range []struct {
		name     string
		secret   string
		playlist int64
		wantID   int64
	}{
		{"its playlist", forWall, 10, 1},
		{"another playlist", forWall, 11, 0},
		{"a dashboard's token", forOne, 10, 0},
		{"a site-wide token", forAll, 11, 3},
		{"expired", expired, 10, 0},
		{"unknown", NewSecret(), 10, 0},
		{"garbage", "nonsense", 10, 0},
	} {
		g, ok := s.CheckPlaylist(tt.secret, tt.playlist, now)
		if ok != (tt.wantID != 0) || g.ID != tt.wantID {
			t.Errorf("CheckPlaylist %s: got grant %d %v, want %d", tt.name, g.ID, ok, tt.wantID)
		}
	}
	var nilSet *Set
	if _, ok := nilSet.CheckPlaylist(forWall, 10, now); ok {
		t.Error("nil set accepted a playlist token")
	}
}

// newPool is a pool on a fresh, migrated database, closed with the test.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	cs := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := migrations.Up(ctx, conn); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestPlaylistToken: a token created for a playlist, loaded from the
// database, opens exactly the dashboards its items name (by slug, so a
// dashboard made later under a named slug too), and the Store reloads it
// when the playlist's items change; deleting the playlist deletes the
// token.
func TestPlaylistToken(t *testing.T) {
	pool := newPool(t)
	ctx := t.Context()
	ids := map[string]int64{}
	for _, slug := range []string{"one", "two", "three"} {
		var id int64
		if err := pool.QueryRow(ctx, "INSERT INTO dashboard.dashboards (slug, title, visibility) VALUES ($1, $1, 'private') RETURNING id", slug).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[slug] = id
	}
	var wall int64
	if err := pool.QueryRow(ctx, "INSERT INTO dashboard.playlists (slug, title) VALUES ('wall', 'Wall') RETURNING id").Scan(&wall); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO dashboard.playlist_items (playlist_id, position, dashboard, variables) VALUES
		($1, 0, 'one', '{}'), ($1, 1, 'two', '{"region": ["eu"]}'), ($1, 2, 'later', '{}'), ($1, 3, 'one', '{"region": ["us"]}')`, wall); err != nil {
		t.Fatal(err)
	}
	if _, _, err := CreateForPlaylist(ctx, pool, "nosuch", "x", 0); err == nil || err.Error() != `no playlist "nosuch"` {
		t.Errorf("CreateForPlaylist of an unknown playlist: got %v", err)
	}
	if _, _, err := CreateForPlaylist(ctx, pool, "wall", " ", 0); err == nil {
		t.Errorf("CreateForPlaylist without a label: got no error")
	}
	secret, tok, err := CreateForPlaylist(ctx, pool, "wall", "lobby", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Playlist != "wall" || tok.Dashboard != "" || tok.ExpiresAt == nil {
		t.Errorf("CreateForPlaylist: got %+v, want playlist wall, no dashboard, an expiry", tok)
	}
	list, err := List(ctx, pool)
	if err != nil || len(list) != 1 || list[0].Playlist != "wall" || list[0].Dashboard != "" {
		t.Errorf("List: got %+v, %v, want the token of playlist wall", list, err)
	}

	opens := func(s *Set) []string {
		var out []string
		for _, slug := range []string{"one", "two", "three", "later"} {
			if g, ok := s.Check(secret, ids[slug], time.Now()); ok && ids[slug] != 0 {
				if g.ID != tok.ID {
					t.Errorf("Check %s: got grant %d, want %d", slug, g.ID, tok.ID)
				}
				out = append(out, slug)
			}
		}
		return out
	}
	store := NewStore(pool, nil)
	if err := store.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := opens(store.Set()), []string{"one", "two"}; !slices.Equal(got, want) {
		t.Errorf("the playlist's token opens %v, want %v", got, want)
	}
	if _, ok := store.Set().CheckPlaylist(secret, wall, time.Now()); !ok {
		t.Errorf("the playlist's token does not open its playlist")
	}

	// The Store follows the feed: a dashboard made under a slug the
	// playlist names, and an item removed.
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- store.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
	}()
	reload := func(table, sql string) {
		t.Helper()
		changed := store.Changed()
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
		store.TableChanged(table, time.Now())
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatalf("the store did not reload after a change to %s", table)
		}
	}
	reload("dashboard.dashboards", "INSERT INTO dashboard.dashboards (slug, title) VALUES ('later', 'Later')")
	var later int64
	if err := pool.QueryRow(ctx, "SELECT id FROM dashboard.dashboards WHERE slug = 'later'").Scan(&later); err != nil {
		t.Fatal(err)
	}
	ids["later"] = later
	if got, want := opens(store.Set()), []string{"one", "two", "later"}; !slices.Equal(got, want) {
		t.Errorf("after later was made: the token opens %v, want %v", got, want)
	}
	reload("dashboard.playlist_items", "DELETE FROM dashboard.playlist_items WHERE dashboard = 'two'")
	if got, want := opens(store.Set()), []string{"one", "later"}; !slices.Equal(got, want) {
		t.Errorf("after two left the playlist: the token opens %v, want %v", got, want)
	}
	reload("dashboard.playlists", "DELETE FROM dashboard.playlists")
	if store.Set().Has(tok.ID) {
		t.Errorf("after the playlist was deleted: its token is still in the set")
	}
}

// TestSetOpens: what an open stream asks at every reload: its grant is
// still there and still opens its dashboard.
func TestSetOpens(t *testing.T) {
	s := &Set{
		grants: []Grant{
			{ID: 1, PlaylistID: 10},
			{ID: 2, DashboardID: 5},
			{ID: 3},
		},
		members: map[int64][]int64{10: {1, 2}},
	}
	for _, tt := range []struct {
		id, dashboard int64
		want          bool
	}{
		{1, 1, true}, {1, 2, true}, {1, 3, false},
		{2, 5, true}, {2, 1, false},
		{3, 99, true},
		{4, 1, false},
	} {
		if got := s.Opens(tt.id, tt.dashboard); got != tt.want {
			t.Errorf("Opens(%d, %d): got %v, want %v", tt.id, tt.dashboard, got, tt.want)
		}
	}
	var nilSet *Set
	if nilSet.Opens(3, 1) {
		t.Error("nil set opens a dashboard")
	}
}

// TestLoadSetWithoutPlaylistGrant: a server role granted SELECT on the
// dashboard tables before the playlists existed (the README's recipe on an
// older release) still loads its tokens after the upgrade, and a
// dashboard's token still opens it; only playlist tokens open nothing.
func TestLoadSetWithoutPlaylistGrant(t *testing.T) {
	pool := newPool(t)
	ctx := t.Context()
	role := fmt.Sprintf("tokens_reader_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	password := fmt.Sprintf("pw-%d", time.Now().UnixNano())
	if _, err := pool.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Skipf("this test needs a user that may create roles: %v", err)
	}
	t.Cleanup(func() {
		for _, sql := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
			if _, err := pool.Exec(context.Background(), sql); err != nil {
				t.Errorf("%s: %v", sql, err)
			}
		}
	})
	for _, sql := range []string{
		"GRANT USAGE ON SCHEMA dashboard TO " + role,
		"GRANT SELECT ON dashboard.dashboards, dashboard.access_tokens TO " + role,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	var id int64
	if err := pool.QueryRow(ctx, "INSERT INTO dashboard.dashboards (slug, title, visibility) VALUES ('one', 'One', 'private') RETURNING id").Scan(&id); err != nil {
		t.Fatal(err)
	}
	secret, _, err := Create(ctx, pool, "one", "desk", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.User, cfg.ConnConfig.Password = role, password
	rolePool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rolePool.Close)
	set, err := LoadSet(ctx, rolePool)
	if err != nil {
		t.Fatalf("LoadSet as a role that may not read the playlists: %v", err)
	}
	if _, ok := set.Check(secret, id, time.Now()); !ok {
		t.Errorf("the dashboard's token does not open it")
	}
}
