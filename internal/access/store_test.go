package access

import (
	"context"
	"testing"
	"time"
)

// TestStoreCurrent: a change of the tokens the feed has told of makes the
// set stale until a load that started after it; changes of other tables
// never do.
func TestStoreCurrent(t *testing.T) {
	s := NewStore(newPool(t), nil)
	ctx := context.Background()
	if err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Current(ctx, 0) {
		t.Fatal("Current after Load: got false, want true")
	}
	s.TableChanged("public.orders", time.Now())
	if !s.Current(ctx, 0) {
		t.Fatal("Current after a change of another table: got false, want true")
	}
	s.TableChanged(TokensTable, time.Now())
	if s.Current(ctx, 50*time.Millisecond) {
		t.Fatal("Current after a change of the tokens, before a reload: got true, want false")
	}
	s.Resync()
	// Run reloads; Current waits for it.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() { cancel(); <-done }()
	if !s.Current(ctx, 30*time.Second) {
		t.Fatal("Current while Run reloads: got false, want true")
	}
	var nilStore *Store
	if !nilStore.Current(ctx, 0) {
		t.Error("a nil Store: got not current, want current")
	}
}
