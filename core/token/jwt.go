package token

import (
	"crypto/subtle"
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
	BodyHash string `json:"bsh"`
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
	// A SHA-256 in unpadded base64url is 43 characters.
	if len(c.BodyHash) != 43 {
		return errors.New("missing or malformed bsh (the body hash)")
	}
	return nil
}

// RegistrationClaims are the claims of a verified registration token.
type RegistrationClaims struct {
	ServiceID string    // "sub"
	BodyHash  string    // "bsh", BodyHash of the request body the token was signed for
	IssuedAt  time.Time // "iat", UTC
	ExpiresAt time.Time // "exp", UTC
	// KeyID is the key id of the master secret whose service key signed the token (set by
	// Keyring.VerifyRegistration; empty from Keys.VerifyRegistration).
	KeyID string
}

// CheckBody reports whether body is the request body the token was signed for: its BodyHash
// must equal the "bsh" claim, else ErrBodyMismatch.
func (c RegistrationClaims) CheckBody(body []byte) error {
	if subtle.ConstantTimeCompare([]byte(BodyHash(body)), []byte(c.BodyHash)) != 1 {
		return ErrBodyMismatch
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
// sends on POST /api/register with the request body body (the exact bytes): HS256
// under the registration key (a worker's, from ServiceKeys), iat = now, exp = now +
// RegistrationLifetime, bsh = BodyHash(body).
func (k Keys) SignRegistration(serviceID string, body []byte, now time.Time) (string, error) {
	c := regClaims{serviceID, window{jwt.NewNumericDate(now), jwt.NewNumericDate(now.Add(RegistrationLifetime))}, BodyHash(body)}
	tok, err := sign(k.register, "registration", &c)
	if err != nil {
		return "", fmt.Errorf("sign registration token: %w", err)
	}
	return tok, nil
}

// VerifyRegistration checks a registration JWT at time now under k's registration
// key and returns its claims. It refuses any algorithm but HS256, a bad signature,
// a missing sub, iat, exp or bsh, an iat in the future or exp in the past (beyond
// Leeway), and exp more than RegistrationLifetime after iat. The caller still
// checks the body (RegistrationClaims.CheckBody) and the service id.
func (k Keys) VerifyRegistration(tok string, now time.Time) (RegistrationClaims, error) {
	var c regClaims
	if err := verify(k.register, "registration", tok, now, &c); err != nil {
		return RegistrationClaims{}, fmt.Errorf("verify registration token: %w", err)
	}
	return RegistrationClaims{ServiceID: c.Subject, BodyHash: c.BodyHash,
		IssuedAt: c.IssuedAt.UTC(), ExpiresAt: c.ExpiresAt.UTC()}, nil
}

// registrationSubject reads the sub claim of a registration JWT without verifying
// anything: it only picks the service key to verify the token with.
func registrationSubject(tok string) (string, error) {
	var c regClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.Subject == "" {
		return "", fmt.Errorf("%w: missing sub", ErrInvalid)
	}
	return c.Subject, nil
}

// ReadRun reads the claims of a run token at time now WITHOUT verifying its
// signature: workers do not hold the run-token key. They authenticate a dispatch
// by opening its "sto" with their own storage key (OpenBackend), which only the
// orchestrator (or their own service) can have sealed. It refuses a token that is
// not a well-formed HS256 JWT, that misses sub, iat or exp, or whose exp has passed
// (beyond Leeway; ErrExpired).
func ReadRun(tok string, now time.Time) (RunClaims, error) {
	if c, ok := fastReadRun(tok, now); ok {
		return c.public(), nil
	}
	c, err := readRunGeneral(tok, now)
	if err != nil {
		return RunClaims{}, err
	}
	return c.public(), nil
}

// readRunGeneral is ReadRun through the JWT parser, for every token the fast path leaves.
func readRunGeneral(tok string, now time.Time) (runClaims, error) {
	var c runClaims
	t, _, err := jwt.NewParser().ParseUnverified(tok, &c)
	switch {
	case err != nil:
		return c, fmt.Errorf("read run token: %w: %v", ErrInvalid, err)
	case t.Method.Alg() != jwt.SigningMethodHS256.Alg():
		return c, fmt.Errorf("read run token: %w: algorithm %s", ErrInvalid, t.Method.Alg())
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("read run token: %w: %v", ErrInvalid, err)
	}
	if !now.Before(c.ExpiresAt.Add(Leeway)) {
		return c, fmt.Errorf("read run token: %w", ErrExpired)
	}
	return c, nil
}

// public is the claims as RunClaims.
func (c runClaims) public() RunClaims {
	return RunClaims{
		RunID: c.Subject, TaskID: c.TaskID, Attempt: c.Attempt, Lease: c.Lease,
		IssuedAt: c.IssuedAt.UTC(), ExpiresAt: c.ExpiresAt.UTC(), Storage: c.Storage,
	}
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
	if tok, ok := fastSignRun(k.run, &rc); ok {
		return tok, nil
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
	if c, ok := fastVerifyRun(k.run, tok, now); ok {
		return c.public(), nil
	}
	return k.verifyRunGeneral(tok, now)
}

// verifyRunGeneral is VerifyRun through the JWT parser, for every token the fast path leaves.
func (k Keys) verifyRunGeneral(tok string, now time.Time) (RunClaims, error) {
	var c runClaims
	if err := verify(k.run, "run-token", tok, now, &c); err != nil {
		return RunClaims{}, fmt.Errorf("verify run token: %w", err)
	}
	return c.public(), nil
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
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fmt.Errorf("%w: %w", ErrInvalid, ErrWrongKey)
	default:
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
}
