package access

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Tables whose changes reload the Store: the tokens, and the playlists
// whose items say what a playlist's token opens (catalog.PlaylistsTable
// and catalog.PlaylistItemsTable, named here so that access does not
// import the catalog).
const (
	TokensTable        = "dashboard.access_tokens"
	playlistsTable     = "dashboard.playlists"
	playlistItemsTable = "dashboard.playlist_items"
	dashboardsTable    = "dashboard.dashboards"
)

// Store keeps the current token Set and reloads it when the change feed
// says dashboard.access_tokens changed. It implements listen.Sink.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger

	set    atomic.Pointer[Set]
	signal chan struct{}
	// heard counts the changes of the Store's tables the feed has told it
	// of (and resyncs); loaded is the count a successful load started
	// after, so loaded >= heard means the set is as new as every change
	// heard so far.
	heard, loaded atomic.Uint64

	mu      sync.Mutex
	changed chan struct{}
}

// NewStore returns a Store; Load or Run fills it.
func NewStore(pool *pgxpool.Pool, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, logger: logger, signal: make(chan struct{}, 1), changed: make(chan struct{})}
}

// Set returns the current tokens; nil (no valid token) for a nil Store.
func (s *Store) Set() *Set {
	if s == nil {
		return nil
	}
	return s.set.Load()
}

// Changed returns a channel closed at the next reload, so that open streams
// re-check their token: a revoked token's streams end at once.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// TableChanged wakes the reload when the tokens table changed.
func (s *Store) TableChanged(table string, _ time.Time) {
	// A playlist's token opens the dashboards its items name by slug, so
	// a dashboard created, renamed or deleted changes what it opens too.
	switch table {
	case TokensTable, playlistsTable, playlistItemsTable, dashboardsTable:
		s.heard.Add(1)
		s.wake()
	}
}

// Resync reloads after every listener (re)connect: a revocation made while
// the feed was down must not be missed.
func (s *Store) Resync() {
	s.heard.Add(1)
	s.wake()
}

// Current waits, at most max, until the set has been loaded after every
// change of the tokens the feed has told of so far, and reports whether it
// has. The feed hands changes over in commit order, to this Store before
// the refresh engine, so an answer checked against a current set never
// carries data committed after a revocation that the answer's token would
// still pass. A nil Store is always current.
func (s *Store) Current(ctx context.Context, max time.Duration) bool {
	if s == nil {
		return true
	}
	want := s.heard.Load()
	if s.loaded.Load() >= want {
		return true
	}
	t := time.NewTimer(max)
	defer t.Stop()
	for {
		// The channel before the check: a Load that finishes between the
		// two closes this channel, rather than one taken too late.
		ch := s.Changed()
		if s.loaded.Load() >= want {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return s.loaded.Load() >= want
		case <-ctx.Done():
			return false
		}
	}
}

func (s *Store) wake() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// Load reads the tokens once.
func (s *Store) Load(ctx context.Context) error {
	heard := s.heard.Load()
	set, err := LoadSet(ctx, s.pool)
	if err != nil {
		return err
	}
	s.set.Store(set)
	if heard > s.loaded.Load() {
		// Only Run and the start call Load, one at a time.
		s.loaded.Store(heard)
	}
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// Run reloads on every signal until ctx is cancelled. A failed reload is
// retried; meanwhile the previous set stays in force.
func (s *Store) Run(ctx context.Context) error {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.signal:
		case <-retry.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.Load(lctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.logger.Warn("reloading access tokens", "err", err)
			retry.Reset(time.Second)
		}
	}
}
