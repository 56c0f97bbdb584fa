package engine

import (
	"math"
	"regexp"
)

// MaxInt4 is the largest value of an integer (int4) column: priority, timeout, retries,
// concurrency, idempotency TTL. Larger values are refused with 400, not sent to PostgreSQL.
const MaxInt4 = math.MaxInt32

// cursorPattern is the shape of a page cursor: the id of the last item of the previous page,
// a prefix and a lower-case ULID (ids.New), or a legacy id made of the same characters.
var cursorPattern = regexp.MustCompile(`^[a-z]{1,8}_[0-9a-z]{26}$`)

// checkCursor refuses a cursor that no page ever handed out.
func checkCursor(cursor string) error {
	if cursor == "" || cursorPattern.MatchString(cursor) {
		return nil
	}
	return invalid("INVALID_CURSOR", "cursor is not a cursor this API returned (use nextCursor of the previous page)")
}
