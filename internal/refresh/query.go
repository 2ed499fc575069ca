package refresh

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// MaxCellRunes bounds one cell's text so that one huge value cannot blow up
// a rendered panel that goes to every viewer.
const MaxCellRunes = 2000

// query runs one panel's SQL in a read-only, repeatable-read transaction
// with a statement timeout. A failure of the SQL itself becomes Result.Err; an error is
// returned only when the database could not be asked (retry later).
//
// The SQL is the panel's Query (its :name placeholders rewritten to $n) with
// args bound to those parameters; values never enter the text.
func (e *Engine) query(ctx context.Context, p *panel.Def, args []any, notice string) (*panel.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.QueryTimeout+2*time.Second)
	defer cancel()
	r := &panel.Result{Notice: notice}
	var queryErr error
	onStandby, err := e.readOnly(ctx, p.DashboardID, func(tx pgx.Tx) error {
		// A run on a standby that replay cancelled runs again on the
		// primary: start afresh.
		r.Columns, r.Rows, r.Truncated, queryErr = nil, nil, false, nil
		// DescribeExec: the extended protocol runs exactly one statement,
		// and nothing is cached that a schema change could make stale.
		sql := p.Query
		if sql == "" {
			sql = p.SQL
		}
		rows, err := tx.Query(ctx, sql, append([]any{pgx.QueryExecModeDescribeExec}, args...)...)
		if err != nil {
			queryErr = err
			return err
		}
		defer rows.Close()
		fields := rows.FieldDescriptions()
		r.Columns = make([]string, len(fields))
		for i, f := range fields {
			r.Columns[i] = cleanText(f.Name)
		}
		for rows.Next() {
			if len(r.Rows) == e.cfg.MaxRows {
				r.Truncated = true
				break
			}
			vals, err := rows.Values()
			if err != nil {
				queryErr = err
				return err
			}
			row := make([]panel.Value, len(vals))
			for i, v := range vals {
				row[i] = toValue(v, fields[i].DataTypeOID)
			}
			r.Rows = append(r.Rows, row)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			queryErr = err
			return err
		}
		if len(fields) == 0 {
			queryErr = errNoRows
			return errNoRows
		}
		return nil
	})
	if err == nil || queryErr != nil && !infrastructure(queryErr) {
		db := "primary"
		if onStandby {
			db = "standby"
		}
		e.cfg.Metrics.panelQueries.WithLabelValues(db).Inc()
	}
	if err == nil {
		return r, nil
	}
	if queryErr != nil && !infrastructure(queryErr) {
		if errors.Is(queryErr, errNoRows) {
			r.Err = "the panel's SQL returned no columns; it must be a query such as SELECT"
		} else if bindError(queryErr) {
			r.Err = "a variable's value does not fit its parameter in the SQL (a multi-valued variable is a text array: write = ANY(:name)): " + queryErr.Error()
		} else {
			r.Err = catalog.QueryError(queryErr)
		}
		r.Columns, r.Rows, r.Truncated = nil, nil, false
		return r, nil
	}
	return nil, fmt.Errorf("running panel %s: %w", p.Slug, err)
}

var errNoRows = errors.New("statement returned no columns")

// zone is the time zone of a dashboard's queries: its own, UTC when it
// names none or one the database may not know.
func (e *Engine) zone(dashboard int64) string {
	if snap := e.snapshot.Load(); snap != nil {
		if d := snap.DashboardByID(dashboard); d != nil && d.TimeZone != "" {
			return d.TimeZone
		}
	}
	return "UTC"
}

// infrastructure reports whether err is the database's or the network's
// fault rather than the query's: such errors are retried, not shown.
func infrastructure(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"),                                 // insufficient resources
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutdown, crash, starting
			pgErr.Code == "40001": // serialization failure: try again
			return true
		}
		return false
	}
	return !errors.Is(err, errNoRows) && !bindError(err)
}

// bindError reports whether pgx could not encode an argument for its
// parameter's type (a multi-valued variable where the SQL wants one
// value): the query's fault, as a type error from the server would be.
// pgx wraps these in "failed to encode args[i]" (extended_query_builder.go)
// and has no error type for them.
func bindError(err error) bool {
	return strings.Contains(err.Error(), "failed to encode args[")
}

// toValue normalises a driver value into a panel.Value with display text.
func toValue(v any, oid uint32) panel.Value {
	switch v := v.(type) {
	case nil:
		return panel.Value{Kind: panel.Null}
	case string:
		return panel.Value{Kind: panel.Text, Text: cleanText(v)}
	case bool:
		n := 0.0
		if v {
			n = 1
		}
		return panel.Value{Kind: panel.Bool, Text: strconv.FormatBool(v), Num: n}
	case int16:
		return number(float64(v), strconv.FormatInt(int64(v), 10))
	case int32:
		return number(float64(v), strconv.FormatInt(int64(v), 10))
	case int64:
		return number(float64(v), strconv.FormatInt(v, 10))
	case float32:
		return number(float64(v), strconv.FormatFloat(float64(v), 'g', -1, 32))
	case float64:
		return number(v, strconv.FormatFloat(v, 'g', -1, 64))
	case pgtype.Numeric:
		if !v.Valid {
			return panel.Value{Kind: panel.Null}
		}
		f, _ := v.Float64Value()
		return number(f.Float64, numericText(v))
	case time.Time:
		t := v.UTC()
		text := t.Format(time.RFC3339Nano)
		switch oid {
		case pgtype.DateOID:
			text = t.Format(time.DateOnly)
		case pgtype.TimestampOID:
			// A timestamp without time zone is a wall clock time, not an
			// instant: no zone in its text, so that views show it as it is.
			text = t.Format("2006-01-02T15:04:05.999999999")
		}
		return panel.Value{Kind: panel.Time, Text: text, Time: t}
	case pgtype.Time:
		d := time.Duration(v.Microseconds) * time.Microsecond
		return panel.Value{Kind: panel.Text, Text: time.Time{}.Add(d).Format("15:04:05.999999")}
	case pgtype.Interval:
		return panel.Value{Kind: panel.Text, Text: intervalText(v)}
	case []byte:
		s := `\x` + hex.EncodeToString(v)
		return panel.Value{Kind: panel.Text, Text: cleanText(s)}
	case [16]byte: // uuid
		return panel.Value{Kind: panel.Text, Text: fmt.Sprintf("%x-%x-%x-%x-%x", v[0:4], v[4:6], v[6:8], v[8:10], v[10:16])}
	case fmt.Stringer:
		return panel.Value{Kind: panel.Text, Text: cleanText(v.String())}
	}
	// Arrays, json objects and the rest: JSON is deterministic (sorted keys).
	b, err := json.Marshal(v)
	if err != nil {
		return panel.Value{Kind: panel.Text, Text: cleanText(fmt.Sprint(v))}
	}
	return panel.Value{Kind: panel.Text, Text: cleanText(string(b))}
}

func number(f float64, text string) panel.Value {
	return panel.Value{Kind: panel.Number, Num: f, Text: text}
}

func numericText(n pgtype.Numeric) string {
	switch {
	case n.NaN:
		return "NaN"
	case n.InfinityModifier == pgtype.Infinity:
		return "Infinity"
	case n.InfinityModifier == pgtype.NegativeInfinity:
		return "-Infinity"
	}
	if n.Int == nil {
		return "0"
	}
	s := new(big.Int).Abs(n.Int).String()
	neg := n.Int.Sign() < 0
	if n.Exp > 0 {
		s += strings.Repeat("0", int(n.Exp))
	} else if n.Exp < 0 {
		frac := int(-n.Exp)
		if len(s) <= frac {
			s = strings.Repeat("0", frac-len(s)+1) + s
		}
		s = s[:len(s)-frac] + "." + s[len(s)-frac:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func intervalText(v pgtype.Interval) string {
	if !v.Valid {
		return ""
	}
	var parts []string
	if v.Months != 0 {
		parts = append(parts, fmt.Sprintf("%d mons", v.Months))
	}
	if v.Days != 0 {
		parts = append(parts, fmt.Sprintf("%d days", v.Days))
	}
	if v.Microseconds != 0 || len(parts) == 0 {
		parts = append(parts, (time.Duration(v.Microseconds) * time.Microsecond).String())
	}
	return strings.Join(parts, " ")
}

// cleanText makes database text safe to carry: valid UTF-8, no NUL, and at
// most MaxCellRunes runes.
func cleanText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	if utf8.RuneCountInString(s) > MaxCellRunes {
		n := 0
		for i := range s {
			if n == MaxCellRunes {
				return s[:i] + "…"
			}
			n++
		}
	}
	return s
}
