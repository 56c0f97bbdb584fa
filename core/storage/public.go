package storage

// RedactedEndpoint is the endpoint as it may be shown (an API answer, a log line): any URL
// password replaced by "xxxxx", the whole endpoint redacted if it does not parse as a URL.
func (c Config) RedactedEndpoint() string { return c.safeEndpoint() }
