-- Pausing a task type (issue 14): POST /api/tasks/{id}/pause sets paused_at, /resume clears it.
-- The claim passes over the runs of a paused task: they are still accepted (enqueued, triggered,
-- retried) and wait, pending, until the task is resumed, when the claim takes them in priority
-- order like any other. Attempts already dispatched run to their end. Registration leaves the
-- column as it is.
ALTER TABLE tasks ADD COLUMN paused_at timestamptz;
