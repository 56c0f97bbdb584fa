package token

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// RegistrationLifetime is both the lifetime SignRegistration gives a
// registration token and the longest exp-iat that VerifyRegistration accepts.
const RegistrationLifetime = 5 * time.Minute

// Leeway is the clock skew tolerated on iat (in the future) and exp.
const Leeway = 30 * time.Second

// RunClaims are the claims of a run token, the dispatch's storageToken.
type RunClaims struct {
	RunID     string    // "sub"
	TaskID    string    // "tid"
	Attempt   int       // "att"
	Lease     int64     // "lse"
	IssuedAt  time.Time // "iat", whole seconds (VerifyRun returns it in UTC)
	ExpiresAt time.Time // "exp", whole seconds (VerifyRun returns it in UTC)
	Storage   string    // "sto", the backend sealed by SealBackend; may be empty
}

// window holds iat and exp and supplies the jwt.Claims methods; it is embedded
// where the wire order puts iat and exp.
type window struct {
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
}

func (w window) GetExpirationTime() (*jwt.NumericDate, error) { return w.ExpiresAt, nil }
func (w window) GetIssuedAt() (*jwt.NumericDate, error)       { return w.IssuedAt, nil }
func (w window) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (w window) GetIssuer() (string, error)                   { return "", nil }
func (w window) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// validate refuses a missing sub, iat or exp.
func (w window) validate(sub string) error {
	switch {
	case sub == "":
		return errors.New("missing sub")
	case w.IssuedAt == nil:
		return errors.New("missing iat")
	case w.ExpiresAt == nil:
		return errors.New("missing exp")
	}
	return nil
}

// regClaims are the registration token's claims, in wire order.
type regClaims struct {
	Subject string `json:"sub"`
	window
}

func (c regClaims) GetSubject() (string, error) { return c.Subject, nil }

// Validate is called by the jwt parser after its own checks.
func (c regClaims) Validate() error {
	if err := c.validate(c.Subject); err != nil {
		return err
	}
	if c.ExpiresAt.Sub(c.IssuedAt.Time) > RegistrationLifetime {
		return fmt.Errorf("exp is more than %v after iat", RegistrationLifetime)
	}
	return nil
}

// runClaims are the run token's claims, in wire order.
type runClaims struct {
	Subject string `json:"sub"`
	TaskID  string `json:"tid"`
	Attempt int    `json:"att"`
	Lease   int64  `json:"lse"`
	window
	Storage string `json:"sto,omitempty"`
}

func (c runClaims) GetSubject() (string, error) { return c.Subject, nil }

// Validate is called by the jwt parser after its own checks.
func (c runClaims) Validate() error { return c.validate(c.Subject) }

// SignRegistration returns the registration JWT a worker of service serviceID
// sends on POST /api/register: HS256 under the registration key, iat = now,
// exp = now + RegistrationLifetime.
func (k Keys) SignRegistration(serviceID string, now time.Time) (string, error) {
	c := regClaims{serviceID, window{jwt.NewNumericDate(now), jwt.NewNumericDate(now.Add(RegistrationLifetime))}}
	tok, err := sign(k.register, "registration", &c)
	if err != nil {
		return "", fmt.Errorf("sign registration token: %w", err)
	}
	return tok, nil
}

// VerifyRegistration checks a registration JWT at time now and returns its
// service id. It refuses any algorithm but HS256, a bad signature, a missing
// sub, iat or exp, an iat in the future or exp in the past (beyond Leeway), and
// exp more than RegistrationLifetime after iat.
func (k Keys) VerifyRegistration(tok string, now time.Time) (serviceID string, err error) {
	var c regClaims
	if err := verify(k.register, "registration", tok, now, &c); err != nil {
		return "", fmt.Errorf("verify registration token: %w", err)
	}
	return c.Subject, nil
}

// SignRun returns the run token for c: HS256 under the run-token key. RunID,
// IssuedAt and ExpiresAt are required; times are truncated to whole seconds.
func (k Keys) SignRun(c RunClaims) (string, error) {
	if c.IssuedAt.IsZero() || c.ExpiresAt.IsZero() {
		return "", errors.New("sign run token: IssuedAt and ExpiresAt are required")
	}
	rc := runClaims{
		Subject: c.RunID, TaskID: c.TaskID, Attempt: c.Attempt, Lease: c.Lease,
		window:  window{jwt.NewNumericDate(c.IssuedAt), jwt.NewNumericDate(c.ExpiresAt)},
		Storage: c.Storage,
	}
	tok, err := sign(k.run, "run-token", &rc)
	if err != nil {
		return "", fmt.Errorf("sign run token: %w", err)
	}
	return tok, nil
}

// VerifyRun checks a run token at time now, with the same refusals as
// VerifyRegistration except the lifetime limit, and returns its claims. It does
// not know which run the caller expects: the caller compares RunID (and Lease).
func (k Keys) VerifyRun(tok string, now time.Time) (RunClaims, error) {
	var c runClaims
	if err := verify(k.run, "run-token", tok, now, &c); err != nil {
		return RunClaims{}, fmt.Errorf("verify run token: %w", err)
	}
	return RunClaims{
		RunID: c.Subject, TaskID: c.TaskID, Attempt: c.Attempt, Lease: c.Lease,
		IssuedAt: c.IssuedAt.UTC(), ExpiresAt: c.ExpiresAt.UTC(), Storage: c.Storage,
	}, nil
}

// sign makes an HS256 JWT of claims under key.
func sign(key []byte, name string, claims jwt.Claims) (string, error) {
	key, err := keyOf(key, name)
	if err != nil {
		return "", err
	}
	if sub, _ := claims.GetSubject(); sub == "" {
		return "", errors.New("empty subject")
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
}

// verify parses tok into claims, checking it under key at time now, and maps
// every jwt failure to ErrExpired or ErrInvalid.
func verify(key []byte, name string, tok string, now time.Time, claims jwt.Claims) error {
	key, err := keyOf(key, name)
	if err != nil {
		return err
	}
	_, err = jwt.ParseWithClaims(tok, claims,
		func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(Leeway),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
	)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrTokenExpired):
		// The signature was checked before the claims, so it is genuine.
		return fmt.Errorf("%w: %v", ErrExpired, err)
	default:
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
}
