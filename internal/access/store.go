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
		s.wake()
	}
}

// Resync reloads after every listener (re)connect: a revocation made while
// the feed was down must not be missed.
func (s *Store) Resync() { s.wake() }

func (s *Store) wake() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// Load reads the tokens once.
func (s *Store) Load(ctx context.Context) error {
	set, err := LoadSet(ctx, s.pool)
	if err != nil {
		return err
	}
	s.set.Store(set)
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
