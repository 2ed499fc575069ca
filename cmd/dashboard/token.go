package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/presence"
	"github.com/livedash/dashboard/internal/web"
)

// tokenCommand is `dashboard token create|list|revoke`.
func tokenCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("token needs create, list or revoke")
	}
	sub, args := args[0], args[1:]
	var run func(*pgxpool.Pool) error
	switch sub {
	case "create":
		fs := flag.NewFlagSet("token create", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		label := fs.String("label", "", "where the token is used, e.g. \"lobby TV\"")
		ttl := fs.Duration("ttl", 0, "lifetime, e.g. 720h; 0 never expires")
		all := fs.Bool("all", false, "valid for every dashboard")
		playlist := fs.String("playlist", "", "valid for the dashboards of this playlist (its slug), which the kiosk link rotates through")
		force := fs.Bool("force", false, "with --playlist: create the token even while a server of an older release runs")
		vars := varFlag{}
		fs.Var(vars, "var", "fix a variable, name=value (repeat for several values or variables): the token's holders cannot choose another")
		kiosk := fs.Bool("kiosk", false, "print a link that opens the dashboard in kiosk mode, for a wall screen (docs/screens.md)")
		theme := fs.String("theme", "", "print a link that forces a theme: dark or light")
		view := fs.String("view", "", "print a link that opens this view, as the dashboard's address has it after ?, e.g. var-region=Europe&from=now-6h")
		// Accept the dashboard before or after the flags.
		var dashboard string
		if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
			dashboard, args = args[0], args[1:]
		}
		if err := fs.Parse(args); err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		if dashboard == "" && fs.NArg() > 0 {
			dashboard = fs.Arg(0)
		}
		if *playlist != "" && (dashboard != "" || *all || len(vars) > 0) {
			return fmt.Errorf("token create: --playlist takes no dashboard, --all or --var (the playlist's items choose the variables)")
		}
		if dashboard == "" && !*all && *playlist == "" {
			return fmt.Errorf("token create needs a dashboard slug, --playlist or --all")
		}
		if *ttl < 0 {
			return fmt.Errorf("token create: --ttl must not be negative")
		}
		if *playlist != "" {
			if *view != "" {
				return fmt.Errorf("token create: --playlist takes no --view (the playlist's items choose their views)")
			}
			// A playlist's link is a kiosk's already (its redirect says
			// so); a forced theme is passed on to every item.
			query, err := linkQuery("", false, *theme, "")
			if err != nil {
				return fmt.Errorf("token create: %w", err)
			}
			run = func(pool *pgxpool.Pool) error {
				if !*force {
					if err := checkServersKnowPlaylists(ctx, pool, presence.DefaultInterval+time.Second); err != nil {
						return fmt.Errorf("token create: %w", err)
					}
				}
				secret, t, err := access.CreateForPlaylist(ctx, pool, *playlist, *label, *ttl)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "token %d created for playlist %s; it is shown only now:\n  %s/p/%s?%stoken=%s\n",
					t.ID, t.Playlist, cfg.PublicBase(), t.Playlist, query, secret)
				return nil
			}
			break
		}
		query, err := linkQuery(dashboard, *kiosk, *theme, *view)
		if err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		run = func(pool *pgxpool.Pool) error {
			secret, t, err := access.Create(ctx, pool, dashboard, *label, *ttl, vars)
			if err != nil {
				return err
			}
			path := "/"
			if dashboard != "" {
				path = "/d/" + dashboard
			}
			fmt.Fprintf(stdout, "token %d created for %s; it is shown only now:\n  %s%s?%stoken=%s\n",
				t.ID, scope(t.Dashboard), cfg.PublicBase(), path, query, secret)
			return nil
		}
	case "list":
		run = func(pool *pgxpool.Pool) error {
			tokens, err := access.List(ctx, pool)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tDASHBOARD\tLABEL\tCREATED\tEXPIRES\tFIXES")
			for _, t := range tokens {
				exp := "never"
				if t.ExpiresAt != nil {
					exp = t.ExpiresAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", t.ID, tokenScope(t), t.Label, t.CreatedAt.UTC().Format(time.RFC3339), exp,
					fixes(t.Variables))
			}
			return tw.Flush()
		}
	case "revoke":
		if len(args) != 1 {
			return fmt.Errorf("token revoke needs one token id (see token list)")
		}
		id, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil {
			return fmt.Errorf("token revoke: %q is not a token id", args[0])
		}
		run = func(pool *pgxpool.Pool) error {
			if err := access.Revoke(ctx, pool, id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "token %d revoked; its open streams close now\n", id)
			return nil
		}
	default:
		return fmt.Errorf("unknown token command %q; want create, list or revoke", sub)
	}
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	pool, err := pgxpool.New(ctx, db.connString)
	if err != nil {
		return fmt.Errorf("connecting to database: %w", err)
	}
	defer pool.Close()
	if err := migrate(ctx, pool); err != nil {
		return err
	}
	return run(pool)
}

// checkServersKnowPlaylists refuses while a server of a release from before
// playlists runs on the database: such a server reads a token whose
// dashboard_id is NULL as a token of every dashboard, so a playlist's token
// would open every dashboard there. Servers of this release register in
// dashboard.servers with the pid of their feed lock connection; a feed
// slot held by a pid that no row names is an older server's. A holder seen
// unregistered is looked at again after settle, since a server of this
// release that has just reconnected its lock connection names the new pid
// at its next round.
func checkServersKnowPlaylists(ctx context.Context, pool *pgxpool.Pool, settle time.Duration) error {
	older, err := presence.OlderServers(ctx, pool)
	if err != nil || len(older) == 0 {
		return err
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	if older, err = presence.OlderServers(ctx, pool); err != nil || len(older) == 0 {
		return err
	}
	var who []string
	for _, s := range older {
		w := fmt.Sprintf("feed slot %d held by backend pid %d", s.Slot, s.PID)
		if s.ClientAddr != "" {
			w += " from " + s.ClientAddr
		}
		if s.ApplicationName != "" {
			w += " (" + s.ApplicationName + ")"
		}
		who = append(who, w)
	}
	return fmt.Errorf("not creating a playlist token while a server of an older release runs on this database "+
		"(%s, not in dashboard.servers): a server from before playlists (migration 0010) reads a playlist's token "+
		"as a token of every dashboard, so this token would open every dashboard there. "+
		"Upgrade or drain that server and try again, or pass --force to create the token anyway", strings.Join(who, "; "))
}

// linkQuery is the part of a token's link before token=: the screen options
// and the view, each followed by "&", or "". The page's exchange of the
// token for a cookie redirects to the same address without the token, so
// a kiosk keeps them. The view is checked for its form only (variables and
// a time range); whether the dashboard has those variables is the page's
// to say.
func linkQuery(dashboard string, kiosk bool, theme, view string) (string, error) {
	var parts []string
	if kiosk {
		if dashboard == "" {
			return "", fmt.Errorf("--kiosk needs a dashboard slug: a kiosk shows one dashboard")
		}
		parts = append(parts, "kiosk")
	}
	if view != "" {
		if dashboard == "" {
			return "", fmt.Errorf("--view needs a dashboard slug: a view is a dashboard's")
		}
		q, err := url.ParseQuery(strings.TrimPrefix(view, "?"))
		if err != nil {
			return "", fmt.Errorf("--view %q is not a query string: %w", view, err)
		}
		for key := range q {
			if !strings.HasPrefix(key, "var-") && key != "from" && key != "to" {
				return "", fmt.Errorf("--view sets variables (var-NAME=VALUE) and the time range (from, to), not %q", key)
			}
		}
		parts = append(parts, q.Encode())
	}
	if theme != "" {
		if err := web.CheckScreen(url.Values{"theme": {theme}}); err != nil {
			return "", fmt.Errorf("--theme: %w", err)
		}
		parts = append(parts, "theme="+url.QueryEscape(theme))
	}
	if len(parts) == 0 {
		return "", nil
	}
	return strings.Join(parts, "&") + "&", nil
}

// tokenScope is what t opens, for token list.
func tokenScope(t access.Token) string {
	if t.Playlist != "" {
		return "playlist " + t.Playlist
	}
	return scope(t.Dashboard)
}

func scope(dashboard string) string {
	if dashboard == "" {
		return "every dashboard"
	}
	return dashboard
}

// varFlag collects repeated --var name=value flags.
type varFlag map[string][]string

func (v varFlag) String() string { return fixes(v) }

func (v varFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("--var wants name=value, got %q", s)
	}
	v[name] = append(v[name], value)
	return nil
}

// fixes shows the variables a token fixes as name=value pairs.
func fixes(vars map[string][]string) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		for _, value := range vars[name] {
			parts = append(parts, name+"="+value)
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
