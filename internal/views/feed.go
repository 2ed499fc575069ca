package views

import (
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

// feedItem is one entry of a feed: an optional time, the main text (the
// first other column) and the remaining columns as details.
type feedItem struct {
	Time    *cell
	Main    cell
	Details []cell
}

// defaultFeedLimit is the number of feed rows shown without Options.Limit.
const defaultFeedLimit = 20

func feedOf(d *panel.Def, r *panel.Result, loc *time.Location) []feedItem {
	limit := d.Options.Limit
	if limit <= 0 {
		limit = defaultFeedLimit
	}
	// A feed's columns are different measures, so of the panel's options
	// only decimals apply, and only to numbers with a fraction: an id or a
	// count never gets decimals.
	o := panel.Options{Decimals: d.Options.Decimals}
	rows := r.Rows
	if len(rows) > limit {
		rows = rows[:limit]
	}
	items := make([]feedItem, 0, len(rows))
	for _, row := range rows {
		var it feedItem
		first := true
		for i, v := range row {
			col := ""
			if i < len(r.Columns) {
				col = r.Columns[i]
			}
			vo := o
			if v.Kind == panel.Number && isInteger(v.Num) {
				vo.Decimals = nil
			}
			c := cellOf(v, col, vo, loc)
			switch {
			case i == 0 && v.Kind == panel.Time:
				if !isDate(v) { // a date keeps its cell text
					z := zoneOr(loc)
					if isWall(v) {
						z = time.UTC
					}
					c.Text = v.Time.In(z).Format("Jan 02 15:04:05")
				}
				it.Time = &c
			case v.Kind == panel.Null:
			case first:
				it.Main, first = c, false
			default:
				it.Details = append(it.Details, c)
			}
		}
		if it.Time == nil && first {
			continue // nothing but nulls
		}
		items = append(items, it)
	}
	return items
}
