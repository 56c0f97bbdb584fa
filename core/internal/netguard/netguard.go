// Package netguard decides which addresses the orchestrator may connect to when it dispatches
// runs to workers, and enforces it where the connection is made: in the Control hook of a
// net.Dialer, which sees every address the dialer tries after DNS resolution (every answer of
// a name that resolves to several, and whatever a name resolves to at that moment, so that DNS
// rebinding gains nothing).
//
// Some addresses are always refused: link-local (169.254.0.0/16, where cloud instance metadata
// lives, and fe80::/10), the unspecified and "this network" addresses (0.0.0.0/8, ::),
// multicast, broadcast, the IPv6 instance metadata of AWS (fd00:ec2::254) and Google Cloud
// (fd20:ce::254), the metadata of Alibaba Cloud (100.100.100.200), Azure's host endpoint
// (168.63.129.16) and deprecated IPv4-compatible IPv6 addresses. Loopback, private (RFC 1918, fc00::/7, fec0::/10) and shared
// (CGNAT, 100.64.0.0/10) addresses are refused unless an allowed network covers them; a listed
// network never opens an always-refused address, even 0.0.0.0/0. Every other address (the
// public internet) is allowed. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) and the NAT64
// well-known prefix (64:ff9b::/96) are judged by the IPv4 address they carry.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrRefused is what every refusal of the guard matches with errors.Is.
var ErrRefused = errors.New("address not allowed")

// RefusedError is the refusal of one address, with the rule that refused it. Its text names
// the address: it is for the orchestrator's log, not for anything a worker can read.
type RefusedError struct {
	// Address is what the dialer tried ("ip:port"), or the address checked.
	Address string
	// Reason names the rule, e.g. "link-local" or "loopback, not in the allowed networks".
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("connection to %s refused by the dispatch guard: %s", e.Address, e.Reason)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

type rule struct {
	prefix netip.Prefix
	reason string
}

func rules(pairs ...string) []rule {
	out := make([]rule, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, rule{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

// always are refused whatever the allowed networks say.
var always = rules(
	"0.0.0.0/8", "unspecified (this network)",
	"169.254.0.0/16", "link-local (cloud instance metadata)",
	"224.0.0.0/4", "multicast",
	"255.255.255.255/32", "broadcast",
	"100.100.100.200/32", "cloud instance metadata (Alibaba Cloud)",
	"168.63.129.16/32", "cloud host endpoint (Azure WireServer)",
	"::/128", "unspecified",
	"fe80::/10", "link-local",
	"ff00::/8", "multicast",
	"fd00:ec2::254/128", "cloud instance metadata (AWS, IPv6)",
	"fd20:ce::254/128", "cloud instance metadata (Google Cloud, IPv6)",
)

// restricted are refused unless an allowed network covers them.
var restricted = rules(
	"127.0.0.0/8", "loopback",
	"::1/128", "loopback",
	"10.0.0.0/8", "private",
	"172.16.0.0/12", "private",
	"192.168.0.0/16", "private",
	"100.64.0.0/10", "shared address space (CGNAT)",
	"fc00::/7", "private (unique local)",
	"fec0::/10", "private (site-local)",
)

var (
	// ipv4Compatible is ::a.b.c.d (RFC 4291, deprecated); :: and ::1 lie in it too.
	ipv4Compatible = netip.MustParsePrefix("::/96")
	// nat64 is the NAT64 well-known prefix (RFC 6052): 64:ff9b::a.b.c.d reaches a.b.c.d.
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	v6Loopback = netip.IPv6Loopback()
)

// Policy is the set of allowed networks the guard applies. The zero value allows no loopback,
// private or shared address.
type Policy struct {
	allowed []netip.Prefix
}

// New is the policy that allows, besides public addresses, the loopback, private and shared
// addresses the allowed networks cover.
func New(allowed []netip.Prefix) *Policy {
	out := make([]netip.Prefix, 0, len(allowed))
	for _, p := range allowed {
		out = append(out, normalize(p))
	}
	return &Policy{allowed: out}
}

// Allowed returns the allowed networks, IPv4-mapped ones given in their IPv4 form.
func (p *Policy) Allowed() []netip.Prefix { return append([]netip.Prefix(nil), p.allowed...) }

// Check returns nil if a dispatch may connect to addr, else a *RefusedError.
func (p *Policy) Check(addr netip.Addr) error {
	if reason := p.refusal(addr); reason != "" {
		return &RefusedError{Address: addr.String(), Reason: reason}
	}
	return nil
}

// refusal is why addr is refused, or "" when it is allowed.
func (p *Policy) refusal(addr netip.Addr) string {
	if !addr.IsValid() {
		return "not an IP address"
	}
	// A zone (fe80::1%eth0) does not change what the address is; Prefix.Contains would not
	// match a zoned address at all.
	a := addr.WithZone("").Unmap()
	if a.Is6() {
		switch {
		case nat64.Contains(a):
			b := a.As16()
			v4 := netip.AddrFrom4([4]byte(b[12:]))
			if r := p.refusal(v4); r != "" {
				return "NAT64 address of " + v4.String() + ": " + r
			}
			return ""
		case ipv4Compatible.Contains(a) && a != v6Loopback && a != netip.IPv6Unspecified():
			return "IPv4-compatible IPv6 address (deprecated)"
		}
	}
	for _, r := range always {
		if r.prefix.Contains(a) {
			return r.reason
		}
	}
	for _, r := range restricted {
		if !r.prefix.Contains(a) {
			continue
		}
		for _, n := range p.allowed {
			if n.Contains(a) {
				return ""
			}
		}
		return r.reason + ", not in the allowed networks (WORKER_ALLOWED_NETWORKS)"
	}
	return ""
}

// Control is a net.Dialer Control hook: it runs once the socket for one resolved address
// exists, before connecting, and refuses the connection unless the policy allows the address.
// Only TCP is allowed.
func (p *Policy) Control(network, address string, _ syscall.RawConn) error {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return &RefusedError{Address: address, Reason: "network " + network + " is not TCP"}
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Address: address, Reason: "not an IP address and port"}
	}
	if reason := p.refusal(ap.Addr()); reason != "" {
		return &RefusedError{Address: address, Reason: reason}
	}
	return nil
}

// Guard installs the policy in d's Control hook (replacing any Control or ControlContext) and
// returns d.
func (p *Policy) Guard(d *net.Dialer) *net.Dialer {
	d.ControlContext = nil
	d.Control = p.Control
	return d
}

// ParseNetworks reads a comma-separated list of networks in CIDR notation ("10.0.0.0/8,
// fd00::/8"); a bare address stands for itself alone (/32 or /128). Empty entries are
// skipped. A network with host bits set ("10.1.2.3/8") is an error, since it is unclear what
// was meant.
func ParseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(raw, "/") {
			var err error
			if p, err = netip.ParsePrefix(raw); err != nil {
				return nil, fmt.Errorf("%q is not a network in CIDR notation (like 10.0.0.0/8 or fd00::/8)", raw)
			}
			if p.Masked() != p {
				return nil, fmt.Errorf("%q has bits set after the prefix length; did you mean %s?", raw, p.Masked())
			}
		} else {
			a, err := netip.ParseAddr(raw)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not a network in CIDR notation (like 10.0.0.0/8 or fd00::/8)", raw)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, normalize(p))
	}
	return out, nil
}

// normalize gives an IPv4-mapped network (::ffff:10.0.0.0/104) in its IPv4 form (10.0.0.0/8),
// since the addresses it is matched against are unmapped.
func normalize(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}
