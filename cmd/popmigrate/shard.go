package main

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// shard is one of Count parts of a migration's accounts (--shard
// INDEX/COUNT): the accounts whose name hashes to Index. An account's
// shard depends on its name and Count alone, never on the other accounts
// or their order, so N workers given the N shards of one journal share
// its accounts without meeting, also when accounts are enrolled while
// they run. The zero shard (Count 0) holds every account.
type shard struct {
	Index, Count int
}

// parseShard parses "INDEX/COUNT" with 0 <= INDEX < COUNT; "" is the zero
// shard.
func parseShard(s string) (shard, error) {
	if s == "" {
		return shard{}, nil
	}
	i, n, ok := strings.Cut(s, "/")
	index, err1 := strconv.Atoi(strings.TrimSpace(i))
	count, err2 := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err1 != nil || err2 != nil || count < 1 || index < 0 || index >= count {
		return shard{}, fmt.Errorf("--shard %q: want INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4 for the first of 4 workers", s)
	}
	return shard{Index: index, Count: count}, nil
}

// has reports whether the account named name belongs to s.
func (s shard) has(name string) bool {
	if s.Count <= 1 {
		return true
	}
	return shardOf(name, s.Count) == s.Index
}

func (s shard) String() string {
	if s.Count == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// shardOf returns the shard of count that the account named name is in:
// FNV-1a (64 bits) of the name, modulo count. It must never change: the
// workers of one migration, of whatever version, agree on it.
func shardOf(name string, count int) int {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int(h.Sum64() % uint64(count))
}
