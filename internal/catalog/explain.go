package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// QueryPlan is what EXPLAIN tells about a query before it ever runs.
type QueryPlan struct {
	// Tables are the tables the query reads, views resolved to their base
	// tables and partitions joined by their partitioned ancestors, plus the
	// explicit dependencies, all in payload form (see Snapshot), sorted.
	Tables []string
	// Writes describes each plan node that writes or locks rows, such as
	// "ModifyTable (Delete on public.orders)" or "LockRows"; empty for a
	// query that only reads. A data-modifying CTE shows here too.
	Writes []string
	// Params is the number of $n parameters the server found.
	Params int
}

// ErrNotQuery means the statement is not a plain query: a utility
// statement (SHOW, COPY, CREATE ..., EXPLAIN) or a statement that returns
// no columns (SELECT INTO, or INSERT, UPDATE, DELETE without RETURNING).
var ErrNotQuery = errors.New("not a query")

var explainSeq atomic.Int64

// Explain finds what query would read without running it. query may have
// $1, $2, ... parameters: it is prepared at the protocol level (so it must
// be exactly one statement), and its generic plan is explained with every
// parameter NULL (plan_cache_mode = force_generic_plan, and partition
// pruning off when there are parameters, so that every partition a
// parameter could select shows). dependsOn names tables the query
// reads that EXPLAIN cannot see (a function's body); each must resolve, or
// the whole lookup fails.
//
// Explain works inside tx and leaves it as it was: everything runs in a
// savepoint that is rolled back, so a broken query does not abort tx and
// plan_cache_mode is not left changed. The caller chooses the transaction's
// access mode and statement_timeout.
func Explain(ctx context.Context, tx pgx.Tx, query string, dependsOn []string) (QueryPlan, error) {
	var plan QueryPlan
	if _, err := tx.Exec(ctx, "SAVEPOINT dashboard_explain"); err != nil {
		return plan, err
	}
	// The prepared statement outlives a savepoint rollback (prepared
	// statements are not transactional), so it is closed in any case; a
	// Close message is accepted even in an aborted transaction.
	name := fmt.Sprintf("dashboard_explain_%d", explainSeq.Add(1))
	conn := tx.Conn()
	err := func() error {
		if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
			return err
		}
		sd, err := conn.Prepare(ctx, name, query)
		if err != nil {
			return err
		}
		defer conn.Deallocate(context.WithoutCancel(ctx), name)
		plan.Params = len(sd.ParamOIDs)
		args := ""
		if plan.Params > 0 {
			args = "(" + strings.Repeat("NULL, ", plan.Params-1) + "NULL)"
			// EXPLAIN EXECUTE starts the executor, whose initial pruning
			// would drop every partition a NULL parameter does not match
			// (all of them): with pruning off, the plan shows each one.
			if _, err := tx.Exec(ctx, "SET LOCAL enable_partition_pruning = off"); err != nil {
				return err
			}
		}
		var raw []byte
		// The simple protocol, so that pgx does not cache a statement whose
		// text names a prepared statement about to be closed.
		if err := tx.QueryRow(ctx, "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE "+name+args, pgx.QueryExecModeSimpleProtocol).Scan(&raw); err != nil {
			return err
		}
		var root []map[string]json.RawMessage
		if json.Unmarshal(raw, &root) != nil || len(root) != 1 || root[0]["Plan"] == nil {
			// EXPLAIN says "Utility Statement" for SHOW, COPY, DDL and the like.
			return fmt.Errorf("%w: a utility statement; only SELECT, VALUES, TABLE and WITH ... SELECT are queries", ErrNotQuery)
		}
		plan.Writes = writingNodes(raw)
		if len(sd.Fields) == 0 && len(plan.Writes) == 0 {
			return fmt.Errorf("%w: the statement returns no columns", ErrNotQuery)
		}
		var schemas, rels []string
		collectRelations(raw, &schemas, &rels)
		// EXPLAIN names the partitions it scans, but a write through a
		// partitioned table fires that table's statement triggers only, so
		// the partitions' ancestors are read too.
		return tx.QueryRow(ctx, `
			WITH scanned AS (
				SELECT c.oid
				FROM unnest($1::text[], $2::text[]) AS t(s, r)
				JOIN pg_namespace n ON n.nspname = t.s
				JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.r
			), rels AS (
				SELECT oid FROM scanned
				UNION
				SELECT a.relid::oid FROM scanned, pg_partition_ancestors(scanned.oid) AS a(relid)
				UNION
				SELECT to_regclass(e.name)::oid FROM unnest($3::text[]) AS e(name)
			)
			SELECT coalesce(array_agg(DISTINCT name ORDER BY name), '{}') FROM (
				SELECT format('%I.%I', n.nspname, c.relname) AS name
				FROM rels
				JOIN pg_class c ON c.oid = rels.oid
				JOIN pg_namespace n ON n.oid = c.relnamespace
			) deps`, schemas, rels, dependsOn).Scan(&plan.Tables)
	}()
	if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT dashboard_explain; RELEASE SAVEPOINT dashboard_explain"); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return QueryPlan{}, err
	}
	return plan, nil
}

// MissingTables returns the names in names that do not resolve to a
// relation (to_regclass), in order; a name that is not valid syntax is an
// error. Like Explain, it leaves tx as it was.
func MissingTables(ctx context.Context, tx pgx.Tx, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT dashboard_missing"); err != nil {
		return nil, err
	}
	var missing []string
	err := tx.QueryRow(ctx, `
		SELECT coalesce(array_agg(name ORDER BY i), '{}')
		FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i)
		WHERE to_regclass(name) IS NULL`, names).Scan(&missing)
	if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT dashboard_missing; RELEASE SAVEPOINT dashboard_missing"); rerr != nil && err == nil {
		err = rerr
	}
	return missing, err
}

// collectRelations walks an EXPLAIN (FORMAT JSON) plan for scanned tables.
func collectRelations(plan []byte, schemas, rels *[]string) {
	walkPlan(plan, func(node map[string]any) {
		rel, _ := node["Relation Name"].(string)
		schema, _ := node["Schema"].(string)
		if rel != "" && schema != "" {
			*schemas = append(*schemas, schema)
			*rels = append(*rels, rel)
		}
	})
}

// writingNodes returns a description of every plan node that writes
// (ModifyTable, whatever the operation, wherever it sits: a
// data-modifying CTE is a ModifyTable below the top) or locks rows
// (LockRows: SELECT ... FOR UPDATE).
func writingNodes(plan []byte) []string {
	var out []string
	walkPlan(plan, func(node map[string]any) {
		switch node["Node Type"] {
		case "ModifyTable":
			op, _ := node["Operation"].(string)
			rel, _ := node["Relation Name"].(string)
			schema, _ := node["Schema"].(string)
			desc := "ModifyTable"
			if op != "" && rel != "" {
				desc += fmt.Sprintf(" (%s on %s.%s)", op, schema, rel)
			}
			out = append(out, desc)
		case "LockRows":
			out = append(out, "LockRows")
		}
	})
	return out
}

// walkPlan calls f for every object of a JSON plan, in a fixed order.
func walkPlan(plan []byte, f func(map[string]any)) {
	var root any
	if json.Unmarshal(plan, &root) != nil {
		return
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			f(v)
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(v[k])
			}
		}
	}
	walk(root)
}
