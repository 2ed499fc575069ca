package listen

import "testing"

func TestSnapshotVisible(t *testing.T) {
	for _, tc := range []struct {
		snap string
		xid  uint32
		want bool
	}{
		{"749:749:", 748, true},
		{"749:749:", 749, false}, // at xmax: not ended (xmax is one past the latest to end)
		{"749:749:", 750, false},
		{"700:760:705,749", 749, false},
		{"700:760:705,749", 750, true},
		{"700:760:705,749", 699, true},
		// Across an epoch boundary: xmax just past it, the id just below.
		{"12884901880:12884901890:12884901885", 0xfffffff9, true},
		{"12884901880:12884901890:12884901885", 0xfffffffd, false},
		{"12884901880:12884901890:12884901885", 1, true}, // = epoch+1, ended
		{"12884901880:12884901890:12884901885", 2, false},
	} {
		snap, err := parseSnapshot(tc.snap)
		if err != nil {
			t.Fatalf("parseSnapshot(%q): %v", tc.snap, err)
		}
		if got := snap.visible(tc.xid); got != tc.want {
			t.Errorf("%s: visible(%d) = %v, want %v", tc.snap, tc.xid, got, tc.want)
		}
	}
	for _, bad := range []string{"", "1:2", "a:2:", "3:2:", "1:5:x"} {
		if _, err := parseSnapshot(bad); err == nil {
			t.Errorf("parseSnapshot(%q): got nil error", bad)
		}
	}
}

func TestSnapshotEndedThrough(t *testing.T) {
	for _, tc := range []struct {
		snap string
		xid  uint32
		want bool
	}{
		{"749:749:", 748, true},
		{"749:749:", 749, false}, // not ended: at xmax
		{"700:760:705,749", 699, true},
		{"700:760:705,749", 700, false}, // 705 still runs, and 700 is not below xmin
		{"700:760:705,749", 750, false},
		// Across an epoch boundary.
		{"12884901890:12884901895:", 0xfffffffd, true},
		{"12884901890:12884901895:", 1, true}, // epoch+1 < xmin epoch+2
		{"12884901890:12884901895:", 2, false},
	} {
		snap, err := parseSnapshot(tc.snap)
		if err != nil {
			t.Fatalf("parseSnapshot(%q): %v", tc.snap, err)
		}
		if got := snap.endedThrough(tc.xid); got != tc.want {
			t.Errorf("%s: endedThrough(%d) = %v, want %v", tc.snap, tc.xid, got, tc.want)
		}
	}
}

func TestSyncStandbyMatches(t *testing.T) {
	const app = "dashboard logical feed"
	for _, tc := range []struct {
		names string
		want  bool
	}{
		{"", false},
		{"*", true},
		{"standby1, standby2", false},
		{"FIRST 1 (standby1, *)", true},
		{"ANY 2 (s1, s2, s3)", false},
		{`2 (s1, "Dashboard Logical Feed")`, true},
		{`"dashboard logical feed"`, true},
		{"s1,dashboard logical feed", true},
	} {
		if got := syncStandbyMatches(tc.names, app); got != tc.want {
			t.Errorf("syncStandbyMatches(%q): got %v, want %v", tc.names, got, tc.want)
		}
	}
}
