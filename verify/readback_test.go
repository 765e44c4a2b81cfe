package verify

import (
	"context"
	"errors"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
)

type fakeLister struct {
	l   []exporters.Listed
	err error
}

func (f fakeLister) List(context.Context, string) ([]exporters.Listed, error) { return f.l, f.err }

// TestExtras pins how listed copies are matched with recorded ones.
func TestExtras(t *testing.T) {
	expect := map[string]want{
		"k1": {uidl: "u1", ref: "r1"},
		"k2": {uidl: "u2", ref: "r2"},
	}
	l := fakeLister{l: []exporters.Listed{
		{Key: "k1", Ref: "r1"},
		{Key: "k2", Ref: "r2-moved"}, // moved since: still the copy of u2
		{Key: "k1", Ref: "r1-copy"},  // a second copy of u1
		{Key: "", Ref: "r2"},         // no key, recorded Ref: accounted for
		{Key: "", Ref: "r9"},         // no key, unknown Ref
		{Key: "k3", Ref: "r3"},       // a key the journal knows without a copy here
		{Key: "k4", Ref: "r4"},       // a key nobody knows
	}}
	known := func(key string) (string, string) {
		if key == "k3" {
			return "u3", "interrupted"
		}
		return "", "unknown"
	}
	res := NewResult("a")
	if err := newChecker(res).extras(t.Context(), l, "a", "d", expect, known); err != nil {
		t.Fatal(err)
	}
	want := []Finding{
		{Kind: Extra, UIDL: "", Ref: "r9", Detail: "the destination cannot tell this message's key"},
		{Kind: Extra, UIDL: "u1", Ref: "r1-copy", Detail: "a second copy of the message (the recorded one is at r1)"},
		{Kind: Extra, UIDL: "u3", Ref: "r3", Detail: "interrupted"},
		{Kind: Extra, UIDL: "", Ref: "r4", Detail: "unknown"},
	}
	if len(res.Findings) != len(want) {
		t.Fatalf("findings %+v, want %+v", res.Findings, want)
	}
	for i, w := range want {
		g := res.Findings[i]
		if g.Kind != w.Kind || g.UIDL != w.UIDL || g.Ref != w.Ref || g.Detail != w.Detail || g.DestID != "d" || g.Account != "a" {
			t.Errorf("finding %d: %+v, want %+v", i, g, w)
		}
	}

	res = NewResult("a")
	if err := newChecker(res).extras(t.Context(), fakeLister{err: errors.New("boom")}, "a", "d", expect, known); err != nil {
		t.Fatal(err)
	}
	if len(res.Findings) != 1 || res.Findings[0].Kind != Unreadable || res.Findings[0].Detail != "list: boom" {
		t.Errorf("a failed listing: %+v, want one unreadable finding", res.Findings)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := newChecker(NewResult("a")).extras(ctx, l, "a", "d", expect, known); !errors.Is(err, context.Canceled) {
		t.Errorf("extras with a cancelled context: %v", err)
	}
}
