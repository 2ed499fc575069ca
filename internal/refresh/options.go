package refresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// MaxOptions bounds what a query-backed variable offers; rows past it are
// not read.
const MaxOptions = 1000

// optionsTTL is how long the options of a query-backed variable are
// reused. A page load, its stream and every viewer of the same choice within
// it cost one query; a new option shows within it.
const optionsTTL = 5 * time.Second

// The cache's bounds: past maxOptionSets sets or maxOptionBytes of option
// text, the stale sets go, and if that is not enough it starts afresh.
const (
	maxOptionSets  = 1000
	maxOptionBytes = 32 << 20
)

// ErrDatabase wraps the errors of Options that mean the database could not
// be asked (try again), as opposed to a *VariableError.
var ErrDatabase = errors.New("database unavailable")

// VariableError is a query-backed variable whose SQL failed: the
// dashboard's fault, not the viewer's nor the database's.
type VariableError struct {
	Variable string
	Message  string // as catalog.QueryError words it, for the operator
}

func (e *VariableError) Error() string {
	return fmt.Sprintf("variable %s: %s", e.Variable, e.Message)
}

type optionSet struct {
	done    chan struct{}
	at      time.Time
	options []string
	err     error
	size    int // bytes held (its key and options) once counted in the cache's total
}

type optionsCache struct {
	mu    sync.Mutex
	sets  map[string]*optionSet
	bytes int // the sizes of the sets in sets
	// running bounds the option queries in flight (half of
	// Config.Concurrency, at least one), so that viewers asking for many
	// distinct choices cannot take the pool from the panels.
	running chan struct{}
}

// Options returns the options of a query-backed variable: the first column
// of its query, as text, run read-only with args bound to its Params (the
// values chosen for the variables before it). Concurrent and repeated
// asks within a few seconds share one query. A failure of the SQL itself is
// a *VariableError; any other error means the database could not be asked.
func (e *Engine) Options(ctx context.Context, dashboard int64, v *panel.Variable, args []any) ([]string, error) {
	key := optionsKey(dashboard, v, args)
	c := &e.options
	c.mu.Lock()
	if c.sets == nil {
		c.sets = make(map[string]*optionSet)
		c.running = make(chan struct{}, max(1, e.cfg.Concurrency/2))
	}
	set := c.sets[key]
	if set != nil {
		select {
		case <-set.done:
			if time.Since(set.at) > optionsTTL || set.err != nil && !isVariableError(set.err) {
				c.remove(key, set) // stale, or the database was down: ask again
				set = nil
			}
		default: // being asked: wait for it
		}
	}
	if set == nil {
		c.makeRoom()
		set = &optionSet{done: make(chan struct{})}
		c.sets[key] = set
		c.mu.Unlock()
		e.readOptions(c, key, set, dashboard, v, args)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-set.done:
		return set.options, set.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readOptions fills set, shared by every caller that asks meanwhile: so
// none of their contexts, only the query timeout, bounds it.
func (e *Engine) readOptions(c *optionsCache, key string, set *optionSet, dashboard int64, v *panel.Variable, args []any) {
	defer close(set.done)
	defer func() {
		if p := recover(); p != nil {
			set.err = fmt.Errorf("%w: reading the options of %s: %v", ErrDatabase, v.Name, p)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.QueryTimeout+2*time.Second)
	defer cancel()
	select {
	case c.running <- struct{}{}:
		func() {
			defer func() { <-c.running }()
			set.options, set.err = e.queryOptions(ctx, dashboard, v, args)
		}()
	case <-ctx.Done():
		set.err = fmt.Errorf("%w: waiting to read the options of %s: %w", ErrDatabase, v.Name, ctx.Err())
	}
	set.at = time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sets[key] == set { // not thrown away meanwhile
		set.size = len(key)
		for _, o := range set.options {
			set.size += len(o)
		}
		c.bytes += set.size
	}
}

// remove takes a set out of the cache with its bytes. Called with mu held.
func (c *optionsCache) remove(key string, set *optionSet) {
	c.bytes -= set.size
	set.size = 0
	delete(c.sets, key)
}

// makeRoom keeps the cache within its bounds before a set is added: stale
// sets go first, then everything. Called with mu held.
func (c *optionsCache) makeRoom() {
	if len(c.sets) < maxOptionSets && c.bytes < maxOptionBytes {
		return
	}
	for key, set := range c.sets {
		select {
		case <-set.done:
			if time.Since(set.at) > optionsTTL {
				c.remove(key, set)
			}
		default:
		}
	}
	if len(c.sets) >= maxOptionSets || c.bytes >= maxOptionBytes {
		// Sets still being read keep their waiters: they hold them.
		c.sets, c.bytes = make(map[string]*optionSet), 0
	}
}

func isVariableError(err error) bool {
	var ve *VariableError
	return errors.As(err, &ve)
}

func optionsKey(dashboard int64, v *panel.Variable, args []any) string {
	var b strings.Builder
	b.WriteString(strconv.FormatInt(dashboard, 10))
	b.WriteByte(0)
	b.WriteString(v.Name)
	b.WriteByte(0)
	b.WriteString(v.Query)
	// JSON keeps every argument apart: ["eu west"] and ["eu","west"] are
	// two keys (fmt would print both as [eu west]), times keep their zone.
	enc, _ := json.Marshal(args)
	b.WriteByte(0)
	b.Write(enc)
	return b.String()
}

func (e *Engine) queryOptions(ctx context.Context, dashboard int64, v *panel.Variable, args []any) ([]string, error) {
	if e.cfg.Pool == nil {
		return nil, fmt.Errorf("%w: no database", ErrDatabase)
	}
	sql := v.Query
	if sql == "" {
		sql = v.SQL
	}
	var options []string
	var queryErr error
	_, err := e.readOnly(ctx, dashboard, func(tx pgx.Tx) error {
		options, queryErr = nil, nil // a run again on the primary starts afresh
		rows, err := tx.Query(ctx, sql, append([]any{pgx.QueryExecModeDescribeExec}, args...)...)
		if err != nil {
			queryErr = err
			return err
		}
		defer rows.Close()
		if len(rows.FieldDescriptions()) == 0 {
			queryErr = errNoRows
			return errNoRows
		}
		for rows.Next() && len(options) < MaxOptions {
			vals, err := rows.Values()
			if err != nil {
				queryErr = err
				return err
			}
			if vals[0] == nil {
				continue // NULL is no option
			}
			options = append(options, toValue(vals[0], rows.FieldDescriptions()[0].DataTypeOID).Text)
		}
		rows.Close()
		queryErr = rows.Err()
		return queryErr
	})
	if err == nil {
		return options, nil
	}
	if queryErr != nil && !infrastructure(queryErr) {
		msg := "the query returned no columns; it must be a query such as SELECT"
		if !errors.Is(queryErr, errNoRows) {
			msg = catalog.QueryError(queryErr)
		}
		e.cfg.Logger.Warn("variable query failed", "variable", v.Name, "err", msg)
		return nil, &VariableError{Variable: v.Name, Message: msg}
	}
	return nil, fmt.Errorf("%w: options of variable %s: %w", ErrDatabase, v.Name, err)
}
