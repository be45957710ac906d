package luaengine

import "sort"

// The methods below read and write the store directly, outside any script,
// for tests that inspect or corrupt a breaker's keys.

// Get returns the string at key and whether it exists as a string.
func (e *Engine) Get(key string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.data[key].(string)
	return s, ok
}

// Set stores a string at key, replacing whatever was there.
func (e *Engine) Set(key, value string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.data[key] = value
}

// SetHash replaces key with a hash of the given fields.
func (e *Engine) SetHash(key string, fields map[string]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := map[string]string{}
	for f, v := range fields {
		h[f] = v
	}
	e.data[key] = h
}

// HGetAll returns a copy of the hash at key (empty when missing or not a hash).
func (e *Engine) HGetAll(key string) map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]string{}
	h, _ := e.data[key].(map[string]string)
	for f, v := range h {
		out[f] = v
	}
	return out
}

// LRange returns the whole list at key, head first.
func (e *Engine) LRange(key string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, _ := e.data[key].([]string)
	return append([]string(nil), l...)
}

// ZMembers returns the members of the sorted set at key with their scores.
func (e *Engine) ZMembers(key string) map[string]float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]float64{}
	if z, ok := e.data[key].(zset); ok {
		for m, s := range z {
			out[m] = s
		}
	}
	return out
}

// XRange returns every entry of the stream at key, oldest first.
func (e *Engine) XRange(key string) []StreamEntry {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s, ok := e.data[key].(*stream); ok {
		return append([]StreamEntry(nil), s.entries...)
	}
	return nil
}

// Keys returns every key in the store, sorted.
func (e *Engine) Keys() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.data))
	for k := range e.data {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Published returns and forgets the messages scripts published so far.
func (e *Engine) Published() []Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.published
	e.published = nil
	return out
}
