// Package dbsqlc holds the orchestrator's SQL statements (queries/*.sql) and the Go code sqlc
// generates from them: one method per statement, with typed parameter and row structs, run on
// a pool or a transaction alike (DBTX). Everything else reaches the database through it and
// internal/database.
package dbsqlc

//go:generate go tool sqlc generate
//go:generate sh -c "../../scripts/sqlc-stamp > sqlc.stamp"
