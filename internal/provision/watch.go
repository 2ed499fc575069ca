package provision

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is how often a Watcher reads its directory.
const DefaultInterval = 2 * time.Second

// Watcher keeps a directory of dashboard files applied while the server
// runs (DASHBOARD_PROVISION_DIR). It reads the directory every Interval and
// acts only when the files' names or bytes changed: no dependency on
// inotify, and it works the same on network and container mounts. A
// directory with problems is logged, one file:line problem per line, and
// the database is left as it was; so is any failed apply. Apply itself
// writes nothing when the rows already match, so a restart, or a second
// server on the same database, writes nothing.
type Watcher struct {
	Dir      string
	Prune    bool
	DB       DB
	Logger   *slog.Logger
	Interval time.Duration // default DefaultInterval
	Options  ApplyOptions  // Prune is taken from the field above

	mu      sync.Mutex
	state   WatchState
	changed chan struct{}
	lastErr string // the last error logged, so a lasting one is logged once
}

// WatchState is what the Watcher last did.
type WatchState struct {
	// Hash is the directory content (Set.Hash) last acted on: applied, found
	// already applied, or refused for its problems.
	Hash string
	// Err is the last attempt's error; nil after a success.
	Err error
	// Attempts counts the directory versions acted on, Applied those that
	// wrote something.
	Attempts, Applied int
}

// State returns the current state and a channel closed at its next change.
func (w *Watcher) State() (WatchState, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
	return w.state, w.changed
}

// Start applies the directory once. Its error, with every problem as
// file:line, is meant to stop the server's start.
func (w *Watcher) Start(ctx context.Context) error {
	set, err := LoadDir(w.Dir)
	if err != nil {
		w.record(set, err, false)
		return err
	}
	res, err := w.apply(ctx, set)
	w.record(set, err, res != nil && res.Applied)
	return err
}

// Run reads the directory every Interval until ctx ends, and applies it
// when it changed. It returns nil when ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		w.poll(ctx)
	}
}

func (w *Watcher) poll(ctx context.Context) {
	set, err := LoadDir(w.Dir)
	w.mu.Lock()
	last := w.state
	w.mu.Unlock()
	var probs Problems
	if set != nil && set.Hash == last.Hash && (last.Err == nil || errors.As(last.Err, &probs)) {
		return // unchanged since it was applied, or since it was refused
	}
	if err != nil {
		w.record(set, err, false)
		return
	}
	res, err := w.apply(ctx, set)
	if ctx.Err() != nil {
		return
	}
	w.record(set, err, res != nil && res.Applied)
}

func (w *Watcher) apply(ctx context.Context, set *Set) (*Result, error) {
	opts := w.Options
	opts.Prune = w.Prune
	res, err := Apply(ctx, w.DB, set, opts)
	if err != nil {
		return nil, err
	}
	for _, u := range res.Unwatched {
		w.logger().Warn("cannot watch a table its panels read; they refresh on the safety net", "table", u.Table, "reason", u.Reason)
	}
	if res.Applied {
		var added, changed, removed int
		for _, d := range res.Plan.Dashboards {
			switch d.Op {
			case Add:
				added++
			case Change:
				changed++
			case Remove:
				removed++
			}
		}
		playlists := 0 // added, changed or removed
		for _, c := range res.Plan.Playlists {
			if c.Op != Keep {
				playlists++
			}
		}
		w.logger().Info("applied dashboard files", "dir", w.Dir, "added", added, "changed", changed, "removed", removed,
			"playlists_written", playlists)
	}
	return res, nil
}

// record notes an attempt, logs its outcome and wakes State's waiters.
func (w *Watcher) record(set *Set, err error, applied bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var probs Problems
	switch {
	case err == nil:
		w.lastErr = ""
	case errors.As(err, &probs):
		for _, p := range probs {
			w.logger().Error("dashboard files not applied; the database is unchanged", "dir", w.Dir, "problem", p.String())
		}
		w.lastErr = ""
	case err.Error() != w.lastErr:
		w.logger().Error("dashboard files not applied; the database is unchanged", "dir", w.Dir, "err", err)
		w.lastErr = err.Error()
	}
	// A failure that is not the files' (the database, a lock) leaves Hash
	// as it was, so the next poll tries again.
	if set != nil && (err == nil || probs != nil) {
		w.state.Hash = set.Hash
	}
	w.state.Err = err
	w.state.Attempts++
	if applied {
		w.state.Applied++
	}
	if w.changed != nil {
		close(w.changed)
	}
	w.changed = make(chan struct{})
}

func (w *Watcher) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}
