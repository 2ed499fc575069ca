// Package access owns who may see a private dashboard: kiosk tokens (random,
// stored as SHA-256, compared in constant time, scoped and expiring) and
// the identity header of a trusted auth proxy. It does not render or route.
package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TokenPrefix starts every token so that leaked ones are easy to find in
// logs and secret scanners.
const TokenPrefix = "dbt_"

// Token is one row of dashboard.access_tokens, without its secret.
type Token struct {
	ID        int64
	Label     string
	Dashboard string // slug; "" means every dashboard, or the playlist's
	// Playlist is the slug of the playlist whose dashboards the token
	// opens; "" for a token of one dashboard or of every one.
	Playlist  string
	CreatedAt time.Time
	ExpiresAt *time.Time
	// Variables are the values the token fixes: its holders see the
	// dashboard with these and cannot choose others.
	Variables map[string][]string
}

// NewSecret returns a new random token.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// Hash is what the database stores for a token.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// ValidSecret reports whether s has the shape of a token, so that garbage
// is refused before it reaches the database.
func ValidSecret(s string) bool {
	if !strings.HasPrefix(s, TokenPrefix) || len(s) != len(TokenPrefix)+43 {
		return false
	}
	// The decoder skips CR and LF, so the decoded length, not only the
	// string's, must be that of a secret.
	b, err := base64.RawURLEncoding.DecodeString(s[len(TokenPrefix):])
	return err == nil && len(b) == 32
}

// MaxLabel is the longest label a token may have, in characters; the
// schema's access_tokens_label_length constraint holds the same limit.
const MaxLabel = 200

// Create stores a new token for dashboard (a slug, or "" for all) and
// returns its secret, which is not kept anywhere. vars, if any, are the
// variables the token fixes; they need a dashboard that declares them
// (whether the values are among its options is checked where the token is
// used, against the options of that moment).
func Create(ctx context.Context, db *pgxpool.Pool, dashboard, label string, ttl time.Duration, vars map[string][]string) (string, Token, error) {
	if err := checkLabel(label); err != nil {
		return "", Token{}, err
	}
	secret := NewSecret()
	var t Token
	var expires *time.Time
	if ttl > 0 {
		e := time.Now().Add(ttl).UTC()
		expires = &e
	}
	var dashID *int64
	if dashboard != "" {
		var id int64
		err := db.QueryRow(ctx, "SELECT id FROM dashboard.dashboards WHERE slug = $1", dashboard).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", Token{}, fmt.Errorf("no dashboard %q", dashboard)
		}
		if err != nil {
			return "", Token{}, fmt.Errorf("finding dashboard: %w", err)
		}
		dashID = &id
	}
	if len(vars) > 0 {
		if dashID == nil {
			return "", Token{}, errors.New("a token that fixes variables needs a dashboard (not --all)")
		}
		var declared []string
		err := db.QueryRow(ctx, `SELECT coalesce(array_agg(v->>'name'), '{}') FROM dashboard.dashboards,
			jsonb_array_elements(variables) v WHERE id = $1`, *dashID).Scan(&declared)
		if err != nil {
			return "", Token{}, fmt.Errorf("reading the dashboard's variables: %w", err)
		}
		for name, values := range vars {
			if !slices.Contains(declared, name) {
				return "", Token{}, fmt.Errorf("dashboard %q has no variable %q (it has: %s)", dashboard, name, strings.Join(declared, ", "))
			}
			if len(values) == 0 {
				return "", Token{}, fmt.Errorf("--var %s needs a value", name)
			}
		}
	}
	if vars == nil {
		vars = map[string][]string{}
	}
	err := db.QueryRow(ctx, `
		INSERT INTO dashboard.access_tokens (token_hash, label, dashboard_id, expires_at, variables)
		VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at`, Hash(secret), label, dashID, expires, vars).Scan(&t.ID, &t.CreatedAt)
	if err != nil {
		return "", Token{}, fmt.Errorf("storing token: %w", err)
	}
	t.Label, t.Dashboard, t.ExpiresAt, t.Variables = label, dashboard, expires, vars
	return secret, t, nil
}

// CreateForPlaylist stores a new token scoped to the playlist with slug
// and returns its secret, which is not kept anywhere. The token opens the
// playlist (/p/<slug>) and the dashboards its items name, whichever they
// are when it is used: editing the playlist changes what it opens. It
// fixes no variables; a playlist's items choose them.
func CreateForPlaylist(ctx context.Context, db *pgxpool.Pool, playlist, label string, ttl time.Duration) (string, Token, error) {
	if err := checkLabel(label); err != nil {
		return "", Token{}, err
	}
	var id int64
	err := db.QueryRow(ctx, "SELECT id FROM dashboard.playlists WHERE slug = $1", playlist).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", Token{}, fmt.Errorf("no playlist %q", playlist)
	}
	if err != nil {
		return "", Token{}, fmt.Errorf("finding playlist: %w", err)
	}
	secret := NewSecret()
	t := Token{Label: label, Playlist: playlist, Variables: map[string][]string{}}
	if ttl > 0 {
		e := time.Now().Add(ttl).UTC()
		t.ExpiresAt = &e
	}
	err = db.QueryRow(ctx, `
		INSERT INTO dashboard.access_tokens (token_hash, label, playlist_id, expires_at)
		VALUES ($1, $2, $3, $4) RETURNING id, created_at`, Hash(secret), label, id, t.ExpiresAt).Scan(&t.ID, &t.CreatedAt)
	if err != nil {
		return "", Token{}, fmt.Errorf("storing token: %w", err)
	}
	return secret, t, nil
}

// checkLabel refuses a label that is empty or too long.
func checkLabel(label string) error {
	if strings.TrimSpace(label) == "" {
		return errors.New("a token needs a --label saying where it is used")
	}
	if n := utf8.RuneCountInString(label); n > MaxLabel {
		return fmt.Errorf("a token's --label has at most %d characters, got %d", MaxLabel, n)
	}
	return nil
}

// List returns every token, newest first.
func List(ctx context.Context, db *pgxpool.Pool) ([]Token, error) {
	rows, err := db.Query(ctx, `
		SELECT t.id, t.label, coalesce(d.slug, ''), coalesce(p.slug, ''), t.created_at, t.expires_at, t.variables
		FROM dashboard.access_tokens t LEFT JOIN dashboard.dashboards d ON d.id = t.dashboard_id
		LEFT JOIN dashboard.playlists p ON p.id = t.playlist_id
		ORDER BY t.id DESC`)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) {
		var t Token
		err := r.Scan(&t.ID, &t.Label, &t.Dashboard, &t.Playlist, &t.CreatedAt, &t.ExpiresAt, &t.Variables)
		return t, err
	})
}

// Revoke deletes a token. Streams that use it close through the change
// feed.
func Revoke(ctx context.Context, db *pgxpool.Pool, id int64) error {
	tag, err := db.Exec(ctx, "DELETE FROM dashboard.access_tokens WHERE id = $1", id)
	if err != nil {
		return fmt.Errorf("revoking token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("no token with id %d", id)
	}
	return nil
}

// Grant is a valid token as the server holds it in memory.
type Grant struct {
	ID   int64
	Hash []byte
	// Label is the token's label, which the viewers of a dashboard who
	// hold a token see among who is watching.
	Label       string
	DashboardID int64 // 0: every dashboard, unless PlaylistID is set
	// PlaylistID, when not 0, limits the grant to the dashboards its
	// playlist's items name (Set.Check).
	PlaylistID int64
	ExpiresAt  time.Time
	// Variables the token fixes (Token.Variables); nil when it fixes none.
	Variables map[string][]string
}

// Set is an immutable snapshot of the valid tokens, reloaded when
// dashboard.access_tokens changes.
type Set struct {
	grants []Grant
	// members holds, by playlist id, the dashboards a playlist token
	// opens: those its items name that exist.
	members map[int64][]int64
}

// LoadSet reads every unexpired token.
func LoadSet(ctx context.Context, db *pgxpool.Pool) (*Set, error) {
	rows, err := db.Query(ctx, `
		SELECT id, token_hash, label, coalesce(dashboard_id, 0), coalesce(playlist_id, 0), coalesce(expires_at, 'infinity'), variables
		FROM dashboard.access_tokens WHERE expires_at IS NULL OR expires_at > now()`)
	if err != nil {
		return nil, fmt.Errorf("loading tokens: %w", err)
	}
	grants, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Grant, error) {
		var g Grant
		var exp pgtypeTime
		err := r.Scan(&g.ID, &g.Hash, &g.Label, &g.DashboardID, &g.PlaylistID, &exp, &g.Variables)
		g.ExpiresAt = exp.t
		if len(g.Variables) == 0 {
			g.Variables = nil
		}
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("loading tokens: %w", err)
	}
	members, err := loadMembers(ctx, db)
	if err != nil {
		return nil, err
	}
	return &Set{grants: grants, members: members}, nil
}

// loadMembers reads which dashboards each playlist's items name, by id:
// what a token scoped to the playlist opens. An item whose dashboard does
// not exist opens nothing.
func loadMembers(ctx context.Context, db *pgxpool.Pool) (map[int64][]int64, error) {
	rows, err := db.Query(ctx, `
		SELECT DISTINCT i.playlist_id, d.id
		FROM dashboard.playlist_items i JOIN dashboard.dashboards d ON d.slug = i.dashboard
		ORDER BY 1, 2`)
	members := make(map[int64][]int64)
	if err == nil {
		var playlist, dashboard int64
		_, err = pgx.ForEachRow(rows, []any{&playlist, &dashboard}, func() error {
			members[playlist] = append(members[playlist], dashboard)
			return nil
		})
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
		// A role granted before the playlists existed: dashboard tokens
		// keep working, playlist tokens open nothing (the catalog's load
		// logs the GRANT that is missing).
		return map[int64][]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading playlists of tokens: %w", err)
	}
	return members, nil
}

// Check returns the grant of secret if it is valid now for dashboardID.
// Every stored hash is compared, in constant time, so timing says nothing
// about which tokens exist.
func (s *Set) Check(secret string, dashboardID int64, now time.Time) (Grant, bool) {
	found, ok := s.lookup(secret)
	if !ok || now.After(found.ExpiresAt) || !s.covers(found, dashboardID) {
		return Grant{}, false
	}
	return found, true
}

// CheckPlaylist returns the grant of secret if it is valid now for the
// playlist with id: a token of that playlist, or one of every dashboard.
// A token of one dashboard never opens a playlist, even one of that
// dashboard alone.
func (s *Set) CheckPlaylist(secret string, playlistID int64, now time.Time) (Grant, bool) {
	g, ok := s.lookup(secret)
	if !ok || now.After(g.ExpiresAt) || g.DashboardID != 0 || (g.PlaylistID != 0 && g.PlaylistID != playlistID) {
		return Grant{}, false
	}
	return g, true
}

// lookup finds the grant of secret, comparing every stored hash in
// constant time.
func (s *Set) lookup(secret string) (Grant, bool) {
	if s == nil || !ValidSecret(secret) {
		return Grant{}, false
	}
	h := Hash(secret)
	var found Grant
	ok := false
	for _, g := range s.grants {
		if subtle.ConstantTimeCompare(g.Hash, h) == 1 {
			found, ok = g, true
		}
	}
	return found, ok
}

// covers reports whether g opens dashboardID: a token of every dashboard
// opens all, a dashboard's token that one, a playlist's token those its
// items name now.
func (s *Set) covers(g Grant, dashboardID int64) bool {
	switch {
	case g.PlaylistID != 0:
		return slices.Contains(s.members[g.PlaylistID], dashboardID)
	case g.DashboardID != 0:
		return g.DashboardID == dashboardID
	}
	return true
}

// Opens reports whether the grant with id is still in the set and still
// opens dashboardID: an open stream asks it at every reload, so that a
// playlist's token stops showing a dashboard taken out of the playlist.
func (s *Set) Opens(id, dashboardID int64) bool {
	if s == nil {
		return false
	}
	for _, g := range s.grants {
		if g.ID == id {
			return s.covers(g, dashboardID)
		}
	}
	return false
}

// Has reports whether the grant with id is still in the set.
func (s *Set) Has(id int64) bool {
	if s == nil {
		return false
	}
	for _, g := range s.grants {
		if g.ID == id {
			return true
		}
	}
	return false
}

// Proxy is the one trusted-proxy rule. A request whose peer address is in
// Ranges comes from a reverse proxy the operator runs, so its
// X-Forwarded-For, X-Forwarded-Proto and identity Header (if set) are
// believed; from any other peer they are ignored entirely. A nil *Proxy
// trusts nobody.
type Proxy struct {
	Header string // identity header; "" believes no user
	Ranges []netip.Prefix
}

// maxForwardedHops bounds how many X-Forwarded-For hops are looked at, so
// that a long chain of trusted addresses costs no more than a short one.
const maxForwardedHops = 32

// User returns the identity a trusted proxy set on r, or "".
func (p *Proxy) User(r *http.Request) string {
	if p == nil || p.Header == "" {
		return ""
	}
	if _, ok := p.trustedPeer(r); !ok {
		return ""
	}
	return strings.TrimSpace(r.Header.Get(p.Header))
}

// ClientAddr returns the address of the client, which per-address limits
// count. From a trusted peer it is the rightmost X-Forwarded-For hop that
// is not itself a trusted proxy: every hop right of it was appended by a
// proxy we trust, every hop left of it may be made up by the client. A
// hop that is not an address stops the walk at the trusted hop right of
// it, because nothing left of it can be believed; when every hop is
// trusted, the leftmost one looked at is the client. From any other peer,
// and when r.RemoteAddr is not an address, it is the peer itself
// (r.RemoteAddr unchanged in the second case). Addresses are returned
// without port or zone, IPv4-mapped IPv6 as IPv4.
func (p *Proxy) ClientAddr(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	client := plain(ap.Addr())
	if p == nil || !p.trusts(client) {
		return client.String()
	}
	lines := r.Header.Values("X-Forwarded-For")
	hops := 0
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for {
			if hops++; hops > maxForwardedHops {
				return client.String()
			}
			hop := rest
			if k := strings.LastIndexByte(rest, ','); k >= 0 {
				hop, rest = rest[k+1:], rest[:k]
			} else {
				rest = ""
			}
			a, ok := parseHop(hop)
			if !ok {
				return client.String()
			}
			client = a
			if !p.trusts(a) {
				return client.String()
			}
			if rest == "" {
				break
			}
		}
	}
	return client.String()
}

// Scheme returns "https" when the client reached us over TLS: the
// connection is TLS, or a trusted peer says so in X-Forwarded-Proto. With
// several values, the first is the one the client-facing proxy saw.
// Anything else is "http".
func (p *Proxy) Scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if _, ok := p.trustedPeer(r); !ok {
		return "http"
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	if strings.EqualFold(strings.TrimSpace(proto), "https") {
		return "https"
	}
	return "http"
}

// trustedPeer returns the address r comes from and whether it is a
// trusted proxy.
func (p *Proxy) trustedPeer(r *http.Request) (netip.Addr, bool) {
	if p == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	a := plain(ap.Addr())
	return a, p.trusts(a)
}

// trusts reports whether a is in one of the trusted ranges.
func (p *Proxy) trusts(a netip.Addr) bool {
	a = plain(a)
	for _, pr := range p.Ranges {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads one X-Forwarded-For element: an address, optionally
// with a port ("1.2.3.4:80", "[2001:db8::1]:443") or in brackets.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return plain(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return plain(ap.Addr()), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return plain(a), true
		}
	}
	return netip.Addr{}, false
}

// plain drops the zone and unmaps IPv4-mapped IPv6, so that one client
// has one spelling.
func plain(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// pgtypeTime scans a timestamptz that may be infinity.
type pgtypeTime struct{ t time.Time }

func (p *pgtypeTime) ScanTimestamptz(v pgtype.Timestamptz) error {
	switch v.InfinityModifier {
	case pgtype.Infinity:
		p.t = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	case pgtype.NegativeInfinity:
		p.t = time.Time{}
	default:
		p.t = v.Time
	}
	return nil
}
