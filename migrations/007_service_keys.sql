-- Per-service keys (issue 10, protocol v2). Each service records the key id of the master
-- secret whose service key signed its last registration: the first 8 bytes, in hex, of
-- HKDF-SHA256(secret, info "pipeweave/v1/key-id"). Its dispatches are sealed under that secret's
-- service key while the orchestrator still has it (PIPEWEAVE_SECRET_KEY or
-- PIPEWEAVE_SECRET_KEY_PREVIOUS), else under the current one. NULL: registered before this
-- migration, or unauthenticated in compat mode; sealed under the current secret.

ALTER TABLE services ADD COLUMN key_id text;
