package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// Flow control (issue 14): rate limits and concurrency per key. The claim enforces both
// (internal/dbsqlc/queries/runs.sql); this file validates what registrations and the rate-limit
// routes ask for, and extracts a run's concurrency key from its input at enqueue.

// MaxRateLimitPeriodMs bounds a rate limit's period (one day).
const MaxRateLimitPeriodMs = 24 * 3600 * 1000

// maxPointerLen bounds a concurrency key's JSON pointer, and MaxConcurrencyKeyLen the stored value
// of a run's key: a longer value is stored as its SHA-256 ("sha256:" and 64 hex digits).
const (
	maxPointerLen        = 256
	MaxConcurrencyKeyLen = 256
)

// noConcurrencyKey stands for "no key" (NULL) in InsertRuns' concurrency_keys: it is not the
// JSON text of any value, which a key is.
const noConcurrencyKey = "-"

// validateFlowControl checks task definition t's rate limit and concurrency key (the task at
// index i of its registration) and sets them on row.
func validateFlowControl(i int, t *protocol.TaskDefinition, row *taskRow) error {
	field := func(code, name, format string, args ...any) error {
		return &Error{Kind: ErrInvalid, Code: code, Msg: fmt.Sprintf("tasks[%d] (%s): %s", i, t.ID, fmt.Sprintf(format, args...)),
			Details: map[string]string{"field": fmt.Sprintf("tasks[%d].%s", i, name)}}
	}
	if t.RateLimit != nil && t.RateLimitKey != "" {
		return field("INVALID_RATE_LIMIT", "rateLimitKey", "rateLimit and rateLimitKey are exclusive: give one")
	}
	if t.RateLimit != nil {
		if err := CheckRateLimit(t.RateLimit.Limit, t.RateLimit.PeriodMs); err != nil {
			var fe *Error
			if errors.As(err, &fe) {
				return field(fe.Code, "rateLimit."+fe.Details.(map[string]string)["field"], "rateLimit.%s", fe.Msg)
			}
			return err
		}
		row.RateLimit, row.RateLimitPeriodMs = &t.RateLimit.Limit, &t.RateLimit.PeriodMs
	}
	if t.RateLimitKey != "" {
		if !idPattern.MatchString(t.RateLimitKey) {
			return field("INVALID_RATE_LIMIT_KEY", "rateLimitKey", "rateLimitKey must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
		}
		row.RateLimitKey = &t.RateLimitKey
	}
	switch {
	case t.ConcurrencyKey == "" && t.ConcurrencyPerKey != nil:
		return field("INVALID_CONCURRENCY_KEY", "concurrencyKey", "concurrencyPerKey needs concurrencyKey (a JSON pointer into the input, such as \"/customerId\")")
	case t.ConcurrencyKey == "":
		return nil
	case t.ConcurrencyPerKey == nil:
		return field("INVALID_CONCURRENCY_PER_KEY", "concurrencyPerKey", "concurrencyKey needs concurrencyPerKey (at least 1)")
	case *t.ConcurrencyPerKey < 1 || *t.ConcurrencyPerKey > MaxInt4:
		return field("INVALID_CONCURRENCY_PER_KEY", "concurrencyPerKey", "concurrencyPerKey must be between 1 and %d", MaxInt4)
	}
	if _, err := ParsePointer(t.ConcurrencyKey); err != nil {
		return field("INVALID_CONCURRENCY_KEY", "concurrencyKey", "concurrencyKey: %v", err)
	}
	row.ConcurrencyKey, row.ConcurrencyPerKey = &t.ConcurrencyKey, t.ConcurrencyPerKey
	return nil
}

// CheckRateLimit checks a rate limit: limit between 1 and MaxInt4, periodMs between 1 and
// MaxRateLimitPeriodMs. Its error's details name the field ("limit" or "periodMs").
func CheckRateLimit(limit int, periodMs int64) error {
	switch {
	case limit < 1 || limit > MaxInt4:
		return &Error{Kind: ErrInvalid, Code: "INVALID_RATE_LIMIT", Msg: fmt.Sprintf("limit must be between 1 and %d", MaxInt4),
			Details: map[string]string{"field": "limit"}}
	case periodMs < 1 || periodMs > MaxRateLimitPeriodMs:
		return &Error{Kind: ErrInvalid, Code: "INVALID_RATE_LIMIT_PERIOD", Msg: fmt.Sprintf("periodMs must be between 1 and %d (a day)", MaxRateLimitPeriodMs),
			Details: map[string]string{"field": "periodMs"}}
	}
	return nil
}

// ParsePointer parses a JSON pointer (RFC 6901) into its reference tokens, unescaped. The empty
// pointer (the whole document) is refused: a key is a part of the input.
func ParsePointer(p string) ([]string, error) {
	switch {
	case p == "":
		return nil, errors.New("the pointer is empty")
	case len(p) > maxPointerLen:
		return nil, fmt.Errorf("the pointer is longer than %d bytes", maxPointerLen)
	case p[0] != '/':
		return nil, fmt.Errorf("%q is not a JSON pointer: it must start with '/'", p)
	}
	tokens := strings.Split(p[1:], "/")
	for i, t := range tokens {
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || (t[j+1] != '0' && t[j+1] != '1')) {
				return nil, fmt.Errorf("%q is not a JSON pointer: '~' must be followed by '0' or '1'", p)
			}
		}
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return tokens, nil
}

// concurrencyKeyOf is the concurrency key of a run of a task whose key is pointer ("" = the task
// has none: nil) with input: the JSON text of the value the pointer selects ("" when the input
// has none there), or its SHA-256 when longer than MaxConcurrencyKeyLen.
func concurrencyKeyOf(pointer string, input []byte) *string {
	if pointer == "" {
		return nil
	}
	key := ""
	if tokens, err := ParsePointer(pointer); err == nil {
		if v, ok := lookupPointer(input, tokens); ok {
			key = string(v)
		}
	}
	if len(key) > MaxConcurrencyKeyLen {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	return &key
}

// lookupPointer finds the value tokens select in the JSON document doc, as compact JSON text
// (lookupValue; null is no value).
func lookupPointer(doc []byte, tokens []string) ([]byte, bool) {
	cur, ok := lookupValue(doc, tokens)
	if !ok {
		return nil, false
	}
	var compact bytes.Buffer
	if json.Compact(&compact, cur) != nil || compact.String() == "null" {
		return nil, false // null is no key
	}
	return compact.Bytes(), true
}

// rateLimitKeys checks that every named rate limit the rows name exists, and holds them until
// the registration commits (a concurrent delete waits).
func rateLimitKeys(ctx context.Context, tx dbtx, rows []taskRow) error {
	var keys []string
	for _, r := range rows {
		if r.RateLimitKey != nil {
			keys = append(keys, *r.RateLimitKey)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	found, err := queries.RateLimitKeysExist(ctx, tx, keys)
	if err != nil {
		return fmt.Errorf("read rate limits: %w", err)
	}
	for i, r := range rows {
		if r.RateLimitKey != nil && !contains(found, *r.RateLimitKey) {
			return &Error{Kind: ErrInvalid, Code: "UNKNOWN_RATE_LIMIT_KEY",
				Msg:     fmt.Sprintf("tasks[%d] (%s): rateLimitKey %q names no rate limit (create it first: PUT /api/rate-limits/%s)", i, r.ID, *r.RateLimitKey, *r.RateLimitKey),
				Details: map[string]string{"field": fmt.Sprintf("tasks[%d].rateLimitKey", i)}}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// MaxRateLimits is the most named rate limits one database holds, so that GET
// /api/rate-limits lists them all.
const MaxRateLimits = 500

// RateLimitPage bounds GET /api/rate-limits: every named rate limit (MaxRateLimits).
const RateLimitPage = MaxRateLimits

// rateLimitsLock is the advisory lock a named rate limit's creation takes, so that concurrent
// creations cannot pass MaxRateLimits together.
const rateLimitsLock int64 = 0x7077726174656c6d

// PutRateLimit creates or replaces the named rate limit key.
func (e *Engine) PutRateLimit(ctx context.Context, key string, limit int, periodMs int64) (protocol.NamedRateLimit, error) {
	if err := checkRateLimitKey(key); err != nil {
		return protocol.NamedRateLimit{}, err
	}
	if err := CheckRateLimit(limit, periodMs); err != nil {
		return protocol.NamedRateLimit{}, err
	}
	var r dbsqlc.RateLimit
	// The lock makes the count and the insert one step across instances (409 TOO_MANY_RATE_LIMITS).
	err := e.db.InTx(ctx, func(tx dbtx) error {
		if err := queries.LockClaims(ctx, tx, rateLimitsLock); err != nil {
			return fmt.Errorf("lock the rate limits: %w", err)
		}
		if _, err := queries.GetRateLimit(ctx, tx, key); errors.Is(err, database.ErrNotFound) {
			n, err := queries.RateLimitCount(ctx, tx)
			if err != nil {
				return fmt.Errorf("count rate limits: %w", err)
			}
			if n >= MaxRateLimits {
				return conflict("TOO_MANY_RATE_LIMITS", "there are %d named rate limits already, the most one database holds", n)
			}
		} else if err != nil {
			return fmt.Errorf("read rate limit %s: %w", key, err)
		}
		var err error
		r, err = queries.PutRateLimit(ctx, tx, dbsqlc.PutRateLimitParams{Key: key, MaxRuns: limit, PeriodMs: periodMs})
		if err != nil {
			return fmt.Errorf("save rate limit %s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return protocol.NamedRateLimit{}, err
	}
	return namedRateLimit(r.Key, r.MaxRuns, r.PeriodMs, r.CreatedAt, r.UpdatedAt), nil
}

// RateLimit reads the named rate limit key (404 RATE_LIMIT_NOT_FOUND).
func (e *Engine) RateLimit(ctx context.Context, key string) (protocol.NamedRateLimit, error) {
	if err := checkRateLimitKey(key); err != nil {
		return protocol.NamedRateLimit{}, err
	}
	r, err := queries.GetRateLimit(ctx, e.db, key)
	if errors.Is(err, database.ErrNotFound) {
		return protocol.NamedRateLimit{}, notFound("RATE_LIMIT_NOT_FOUND", "rate limit %q does not exist", key)
	}
	if err != nil {
		return protocol.NamedRateLimit{}, fmt.Errorf("read rate limit %s: %w", key, err)
	}
	return namedRateLimit(r.Key, r.MaxRuns, r.PeriodMs, r.CreatedAt, r.UpdatedAt), nil
}

// RateLimits lists the named rate limits in key order, the first RateLimitPage of them.
func (e *Engine) RateLimits(ctx context.Context) ([]protocol.NamedRateLimit, error) {
	rows, err := queries.ListRateLimits(ctx, e.db, dbsqlc.ListRateLimitsParams{After: "", Lim: RateLimitPage})
	if err != nil {
		return nil, fmt.Errorf("list rate limits: %w", err)
	}
	out := make([]protocol.NamedRateLimit, len(rows))
	for i, r := range rows {
		out[i] = namedRateLimit(r.Key, r.MaxRuns, r.PeriodMs, r.CreatedAt, r.UpdatedAt)
	}
	return out, nil
}

// DeleteRateLimit deletes the named rate limit key: 404 RATE_LIMIT_NOT_FOUND if there is none,
// 409 RATE_LIMIT_IN_USE while registered tasks name it (they must be registered without it first).
func (e *Engine) DeleteRateLimit(ctx context.Context, key string) error {
	if err := checkRateLimitKey(key); err != nil {
		return err
	}
	return e.db.InTx(ctx, func(tx dbtx) error {
		n, err := queries.DeleteRateLimit(ctx, tx, key)
		if err != nil {
			return fmt.Errorf("delete rate limit %s: %w", key, err)
		}
		if n == 0 {
			return notFound("RATE_LIMIT_NOT_FOUND", "rate limit %q does not exist", key)
		}
		users, err := queries.RateLimitUsers(ctx, tx, &key)
		if err != nil {
			return fmt.Errorf("read the tasks of rate limit %s: %w", key, err)
		}
		if len(users) > 0 {
			e := conflict("RATE_LIMIT_IN_USE", "rate limit %q is used by task(s) %s: register them without it first", key, strings.Join(users, ", "))
			e.Details = map[string]any{"tasks": users}
			return e
		}
		if err := queries.DeleteRateLimitWindow(ctx, tx, key); err != nil {
			return fmt.Errorf("delete the window of rate limit %s: %w", key, err)
		}
		return nil
	})
}

func checkRateLimitKey(key string) error {
	if !idPattern.MatchString(key) {
		return &Error{Kind: ErrInvalid, Code: "INVALID_RATE_LIMIT_KEY",
			Msg:     "the rate limit key must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
			Details: map[string]string{"field": "key"}}
	}
	return nil
}

func namedRateLimit(key string, limit int, periodMs int64, created, updated time.Time) protocol.NamedRateLimit {
	return protocol.NamedRateLimit{Key: key, Limit: limit, PeriodMs: periodMs, CreatedAt: created, UpdatedAt: updated}
}
