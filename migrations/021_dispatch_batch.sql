-- Batch dispatch (this project's extension, docs/protocol.md, Batch dispatch): the most
-- dispatches a service's workers take in one POST {baseUrl}/tasks, as its registration said
-- (dispatchBatchMax, capped by the orchestrator); 0: one dispatch per request, as upstream's
-- workers take them.
ALTER TABLE services ADD COLUMN dispatch_batch_max int NOT NULL DEFAULT 0;
