package storage

import "net/url"

// RedactedEndpoint is the endpoint as it may be shown (an API answer, a log line): as
// configured, except that a URL password is replaced by "xxxxx" and an endpoint that does not
// parse as a URL is redacted whole.
func (c Config) RedactedEndpoint() string {
	if c.Endpoint == "" {
		return ""
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return redacted
	}
	if _, has := u.User.Password(); has {
		return u.Redacted()
	}
	return c.Endpoint
}
