// Package functions holds the stateless entry points of a serverless deployment, one command
// per directory, each a few lines around package core:
//
//	functions/api   the HTTP API (all /api/* endpoints and /health)
//
// The scheduled functions (process, heartbeat-sweep, dlq-purge) and the AWS Lambda adapters
// come with the serverless packaging; see deploy/ once it exists.
package functions
