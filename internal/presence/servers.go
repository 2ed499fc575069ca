package presence

import (
	"context"
	"fmt"

	"github.com/livedash/dashboard/internal/listen"
)

// OlderServers returns the feed slot holders on the database (found in
// pg_locks by listen.ReadStatus) whose backend pid no unexpired row of
// dashboard.servers names: servers of a release from before this registry
// (0011). A server of this release names the pid of its feed lock
// connection in its row within one Interval of (re)connecting it, so a
// caller that finds one should look again after an Interval before it
// takes the holder for an older server.
func OlderServers(ctx context.Context, q listen.Querier) ([]listen.ServerStatus, error) {
	st, err := listen.ReadStatus(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(st.Servers) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT lock_pid FROM dashboard.servers WHERE expires_at > now() AND lock_pid IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("reading the servers' registry: %w", err)
	}
	registered := make(map[int32]bool)
	for rows.Next() {
		var pid int32
		if err := rows.Scan(&pid); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading the servers' registry: %w", err)
		}
		registered[pid] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the servers' registry: %w", err)
	}
	var older []listen.ServerStatus
	for _, s := range st.Servers {
		if !registered[s.PID] {
			older = append(older, s)
		}
	}
	return older, nil
}
