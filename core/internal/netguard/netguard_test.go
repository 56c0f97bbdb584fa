package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	// everything lists every network there is: only the always-refused addresses stay refused.
	everything = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
)

// Each address with what the policy says under no allowed network, loopback only, and
// 0.0.0.0/0 + ::/0.
func TestCheck(t *testing.T) {
	t.Parallel()
	const (
		refused = false
		allowed = true
	)
	none, lo, all := New(nil), New(loopback), New(everything)
	cases := []struct {
		addr               string
		byDefault, lo, all bool
		reason             string // part of the reason under the default policy
	}{
		// Public addresses: always allowed.
		{"93.184.216.34", allowed, allowed, allowed, ""},
		{"8.8.8.8", allowed, allowed, allowed, ""},
		{"2606:4700:4700::1111", allowed, allowed, allowed, ""},
		{"::ffff:8.8.8.8", allowed, allowed, allowed, ""},
		{"64:ff9b::808:808", allowed, allowed, allowed, ""}, // NAT64 of 8.8.8.8
		// Just outside the restricted ranges.
		{"11.0.0.1", allowed, allowed, allowed, ""},
		{"172.15.255.255", allowed, allowed, allowed, ""},
		{"172.32.0.0", allowed, allowed, allowed, ""},
		{"100.63.255.255", allowed, allowed, allowed, ""},
		{"100.128.0.0", allowed, allowed, allowed, ""},
		{"169.253.255.255", allowed, allowed, allowed, ""},
		{"169.255.0.0", allowed, allowed, allowed, ""},
		{"1.0.0.0", allowed, allowed, allowed, ""},
		{"223.255.255.255", allowed, allowed, allowed, ""},
		{"::2:0:0:1", allowed, allowed, allowed, ""},

		// Always refused, whatever is listed.
		{"169.254.169.254", refused, refused, refused, "link-local"},
		{"169.254.170.2", refused, refused, refused, "link-local"}, // ECS task metadata
		{"169.254.0.1", refused, refused, refused, "link-local"},
		{"::ffff:169.254.169.254", refused, refused, refused, "link-local"},
		{"::ffff:a9fe:a9fe", refused, refused, refused, "link-local"},
		{"64:ff9b::a9fe:a9fe", refused, refused, refused, "NAT64 address of 169.254.169.254: link-local"},
		{"fe80::1", refused, refused, refused, "link-local"},
		{"fe80::1%eth0", refused, refused, refused, "link-local"},
		{"febf:ffff::1", refused, refused, refused, "link-local"},
		{"fd00:ec2::254", refused, refused, refused, "AWS"},
		{"fd20:ce::254", refused, refused, refused, "Google"},
		{"100.100.100.200", refused, refused, refused, "Alibaba"},
		{"::ffff:100.100.100.200", refused, refused, refused, "Alibaba"},
		{"168.63.129.16", refused, refused, refused, "Azure"},
		{"0.0.0.0", refused, refused, refused, "unspecified"},
		{"0.1.2.3", refused, refused, refused, "unspecified"},
		{"::ffff:0.0.0.0", refused, refused, refused, "unspecified"},
		{"::", refused, refused, refused, "unspecified"},
		{"224.0.0.1", refused, refused, refused, "multicast"},
		{"239.255.255.250", refused, refused, refused, "multicast"},
		{"ff02::1", refused, refused, refused, "multicast"},
		{"ff05::1:3", refused, refused, refused, "multicast"},
		{"255.255.255.255", refused, refused, refused, "broadcast"},
		{"::ffff:255.255.255.255", refused, refused, refused, "broadcast"},
		{"::7f00:1", refused, refused, refused, "IPv4-compatible"},
		{"::a9fe:a9fe", refused, refused, refused, "IPv4-compatible"},

		// Loopback: refused unless listed.
		{"127.0.0.1", refused, allowed, allowed, "loopback"},
		{"127.1.2.3", refused, allowed, allowed, "loopback"},
		{"::1", refused, allowed, allowed, "loopback"},
		{"::ffff:127.0.0.1", refused, allowed, allowed, "loopback"},
		{"64:ff9b::7f00:1", refused, allowed, allowed, "NAT64 address of 127.0.0.1: loopback"},

		// Private and shared: refused unless listed (loopback does not cover them).
		{"10.0.0.5", refused, refused, allowed, "private"},
		{"10.255.255.255", refused, refused, allowed, "private"},
		{"172.16.0.1", refused, refused, allowed, "private"},
		{"172.31.255.255", refused, refused, allowed, "private"},
		{"192.168.1.1", refused, refused, allowed, "private"},
		{"::ffff:192.168.1.1", refused, refused, allowed, "private"},
		{"::ffff:c0a8:101", refused, refused, allowed, "private"},
		{"fc00::1", refused, refused, allowed, "private"},
		{"fd12:3456::1", refused, refused, allowed, "private"},
		{"fec0::1", refused, refused, allowed, "site-local"},
		{"100.64.0.1", refused, refused, allowed, "CGNAT"},
		{"100.127.255.255", refused, refused, allowed, "CGNAT"},
	}
	for _, c := range cases {
		addr := netip.MustParseAddr(c.addr)
		for _, p := range []struct {
			name string
			p    *Policy
			want bool
		}{{"default", none, c.byDefault}, {"loopback", lo, c.lo}, {"everything", all, c.all}} {
			err := p.p.Check(addr)
			if p.want {
				require.NoError(t, err, "%s under %s", c.addr, p.name)
				continue
			}
			require.ErrorIs(t, err, ErrRefused, "%s under %s", c.addr, p.name)
			var re *RefusedError
			require.ErrorAs(t, err, &re)
			if p.name == "default" {
				require.Contains(t, re.Reason, c.reason, c.addr)
			}
		}
	}
	require.ErrorIs(t, none.Check(netip.Addr{}), ErrRefused, "the zero address")
}

// A listed network opens exactly what it covers, whether it was given in IPv4 or IPv4-mapped
// form, and never an always-refused address inside it.
func TestAllowedNetworks(t *testing.T) {
	t.Parallel()
	nets, err := ParseNetworks("10.1.0.0/16, ::ffff:192.168.7.0/120,fd00:1::/32,127.0.0.1")
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.168.7.0/24"),
		netip.MustParsePrefix("fd00:1::/32"), netip.MustParsePrefix("127.0.0.1/32")}, nets)
	p := New(nets)
	for addr, ok := range map[string]bool{
		"10.1.2.3": true, "::ffff:10.1.2.3": true, "10.2.0.1": false,
		"192.168.7.9": true, "::ffff:192.168.7.9": true, "192.168.8.1": false,
		"fd00:1::5": true, "fd00:2::5": false,
		"127.0.0.1": true, "127.0.0.2": false, "::1": false,
	} {
		err := p.Check(netip.MustParseAddr(addr))
		if ok {
			require.NoError(t, err, addr)
		} else {
			require.ErrorIs(t, err, ErrRefused, addr)
		}
	}
	// 169.254.0.0/16 and fd00::/8 listed: metadata stays refused.
	p = New([]netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("100.64.0.0/10")})
	for _, addr := range []string{"169.254.169.254", "fd00:ec2::254", "100.100.100.200"} {
		require.ErrorIs(t, p.Check(netip.MustParseAddr(addr)), ErrRefused, addr)
	}
	require.NoError(t, p.Check(netip.MustParseAddr("fd00:ec2::253")))
	require.NoError(t, p.Check(netip.MustParseAddr("100.100.100.201")))
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("100.64.0.0/10")}, p.Allowed())
}

func TestParseNetworks(t *testing.T) {
	t.Parallel()
	nets, err := ParseNetworks("")
	require.NoError(t, err)
	require.Empty(t, nets)
	nets, err = ParseNetworks(" , 127.0.0.0/8 ,::1/128,, ")
	require.NoError(t, err)
	require.Equal(t, loopback, nets)
	nets, err = ParseNetworks("::1")
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("::1/128")}, nets)
	for _, bad := range []string{"10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "localhost", "10.0.0.0/8;", "fe80::/10%eth0",
		"fe80::1%eth0", "::/129", "10.0.0.0/8,nope", "*"} {
		_, err := ParseNetworks(bad)
		require.Error(t, err, bad)
	}
	_, err = ParseNetworks("10.1.2.3/8")
	require.ErrorContains(t, err, "did you mean 10.0.0.0/8?")
}

// Control refuses before connecting: the dial to a listening loopback port fails unless
// loopback is listed, also when the name resolves to it (localhost), and the listener
// accepts nothing.
func TestDialerRefusesAtConnectTime(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			_ = c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	dial := func(p *Policy, host string) error {
		d := p.Guard(&net.Dialer{Timeout: 5 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		err := dial(New(nil), host)
		require.ErrorIs(t, err, ErrRefused, host)
		var re *RefusedError
		require.True(t, errors.As(err, &re), host)
		require.Contains(t, re.Reason, "loopback")
	}
	require.Empty(t, accepted, "a refused dial never connects")

	require.NoError(t, dial(New(loopback), "127.0.0.1"))
	<-accepted
	// Metadata is refused without any listener there: Control runs before connect.
	require.ErrorIs(t, dial(New(everything), "169.254.169.254"), ErrRefused)
	require.ErrorIs(t, dial(New(everything), "::ffff:169.254.169.254"), ErrRefused)
}

func TestControlRefusesOtherNetworks(t *testing.T) {
	t.Parallel()
	p := New(everything)
	require.NoError(t, p.Control("tcp4", "8.8.8.8:80", nil))
	require.NoError(t, p.Control("tcp6", "[2606:4700:4700::1111]:443", nil))
	require.ErrorIs(t, p.Control("udp4", "8.8.8.8:53", nil), ErrRefused)
	require.ErrorIs(t, p.Control("tcp", "example.com:80", nil), ErrRefused)
	require.ErrorIs(t, p.Control("tcp6", "[fe80::1%eth0]:80", nil), ErrRefused)
}
